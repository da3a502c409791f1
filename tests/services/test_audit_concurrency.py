"""Concurrent writers never fork the audit chain: each new row links to the row committed just before it.

This needs real commits from several connections, and PostgreSQL refuses to delete audit rows, so the
test runs in a database of its own: a fresh SQLite file, or a throw-away database beside TEST_DATABASE_URL.
"""

import threading
from datetime import timedelta

import flask_migrate
from sqlalchemy import select

from app import clock, create_app
from app.config import TestConfig
from app.extensions import db
from app.models import AuditEntry
from app.models.keys import Role
from app.services import audit, keys
from app.services.actor import Actor, Channel
from app.services.uow import unit_of_work

WRITERS = 4
ENTRIES_EACH = 10


def _migrated_app(test_env, url):
    app = create_app(TestConfig({**test_env, "TEST_DATABASE_URL": url}))
    with app.app_context():
        flask_migrate.upgrade()
    return app


def _run_together(app, work, count: int) -> list[str]:
    """Run `work(n)` for n in range(count) in as many threads, each with its own connection, started at once;
    returns the exceptions they raised (an assertion in a thread would be lost)."""
    start = threading.Barrier(count)
    failures = []

    def run(n: int) -> None:
        with app.app_context():
            try:
                start.wait()
                work(n)
            except Exception as exc:
                failures.append(repr(exc))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return failures


def test_concurrent_writers_keep_one_unbroken_chain(test_env, own_database):
    app = _migrated_app(test_env, own_database)

    def write(writer: int) -> None:
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

    assert _run_together(app, write, WRITERS) == []
    with app.app_context():
        report = audit.verify_chain()
        db.engine.dispose()
    assert report.ok, report
    assert report.checked == WRITERS * ENTRIES_EACH


BAD_KEYS = 40


def test_concurrent_failures_from_one_address_write_exactly_the_quota_and_one_summary(test_env, own_database):
    app = _migrated_app(test_env, own_database)
    minute = clock.utcnow()
    attacker = Actor(name="anonymous", role=Role.VIEWER, channel=Channel.API, ip="203.0.113.7")

    def fail_once(_: int) -> None:
        keys.record_auth_failure(attacker, "unknown key", now=minute)

    assert _run_together(app, fail_once, BAD_KEYS) == []
    with app.app_context():
        assert keys.failures_in_window("203.0.113.7", minute) == BAD_KEYS
        assert keys.flush_auth_failures(minute + timedelta(minutes=1)) == 1
        rows = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "auth.failed")).all()
        report = audit.verify_chain()
        db.engine.dispose()
    assert [row.after for row in rows] == [None] * keys.AUTH_FAILURES_AUDITED_PER_ADDRESS + [
        {"suppressed": BAD_KEYS - 10, "window_start": minute.replace(second=0, microsecond=0).isoformat()}
    ]
    assert report.ok
