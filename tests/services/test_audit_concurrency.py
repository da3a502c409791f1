"""Concurrent writers never fork the audit chain: each new row links to the row committed just before it.

This needs real commits from several connections, and PostgreSQL refuses to delete audit rows, so the
test runs in a database of its own: a fresh SQLite file, or a throw-away database beside TEST_DATABASE_URL.
"""

import threading

import flask_migrate

from app import clock, create_app
from app.config import TestConfig
from app.extensions import db
from app.services import audit
from app.services.actor import Actor
from app.services.uow import unit_of_work

WRITERS = 4
ENTRIES_EACH = 10


def test_concurrent_writers_keep_one_unbroken_chain(test_env, own_database):
    app = create_app(TestConfig({**test_env, "TEST_DATABASE_URL": own_database}))
    with app.app_context():
        flask_migrate.upgrade()
    start = threading.Barrier(WRITERS)
    failures = []

    def write(writer: int) -> None:
        with app.app_context():
            try:
                start.wait()
                for n in range(ENTRIES_EACH):
                    with unit_of_work() as session:
                        audit.record(
                            session,
                            Actor.cli(f"writer-{writer}"),
                            "grace.reset",
                            f"user-{n}",
                            None,
                            {"n": n},
                            now=clock.utcnow(),
                        )
            except Exception as exc:  # reported below: an assertion in a thread would be lost
                failures.append(repr(exc))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    with app.app_context():
        report = audit.verify_chain()
        db.engine.dispose()
    assert report.ok, report
    assert report.checked == WRITERS * ENTRIES_EACH
