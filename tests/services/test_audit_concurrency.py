"""Concurrent writers never fork the audit chain: each new row links to the row committed just before it.

This needs real commits from several connections, and PostgreSQL refuses to delete audit rows, so the
test runs in a database of its own: a fresh SQLite file, or a throw-away database beside TEST_DATABASE_URL.
"""

import threading
import uuid

import flask_migrate
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app import clock, create_app
from app.config import TestConfig, database_uri
from app.extensions import db
from app.services import audit
from app.services.actor import Actor
from app.services.uow import unit_of_work

WRITERS = 4
ENTRIES_EACH = 10


@pytest.fixture
def own_database(test_env, tmp_path):
    """The URL of a new, empty database on the same server as the suite's, dropped afterwards."""
    url = make_url(database_uri(test_env["TEST_DATABASE_URL"], tmp_path))
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'chain.db'}"
        return
    name = f"billops_chain_{uuid.uuid4().hex[:12]}"
    server = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        server.dispose()


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
