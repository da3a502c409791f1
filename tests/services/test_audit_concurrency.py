"""Concurrent writers never fork the audit chain: each new row links to the row committed just before it.

This needs real commits from several connections, and PostgreSQL refuses to delete audit rows, so the
test runs in a database of its own: a fresh SQLite file, or a throw-away database beside TEST_DATABASE_URL.
"""

from datetime import timedelta

import pytest
from sqlalchemy import select

from app import clock
from app.extensions import db
from app.models import AuditEntry
from app.models.keys import Role
from app.services import audit, keys
from app.services.actor import Actor, Channel
from app.services.uow import unit_of_work
from tests.concurrency import migrated_app, run_together

WRITERS = 4
ENTRIES_EACH = 10


@pytest.fixture
def app(test_env, own_database):
    with migrated_app(test_env, own_database) as app:
        yield app


def test_concurrent_writers_keep_one_unbroken_chain(app):

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

    assert run_together(app, write, WRITERS) == []
    with app.app_context():
        report = audit.verify_chain()
    assert report.ok, report
    assert report.checked == WRITERS * ENTRIES_EACH


BAD_KEYS = 40


def test_concurrent_failures_from_one_address_write_exactly_the_quota_and_one_summary(app):
    minute = clock.utcnow()
    attacker = Actor(name="anonymous", role=Role.VIEWER, channel=Channel.API, ip="203.0.113.7")

    def fail_once(_: int) -> None:
        keys.record_auth_failure(attacker, "unknown key", now=minute)

    assert run_together(app, fail_once, BAD_KEYS) == []
    with app.app_context():
        assert keys.failures_in_window("203.0.113.7", minute) == BAD_KEYS
        assert keys.flush_auth_failures(minute + timedelta(minutes=1)) == 1
        rows = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "auth.failed")).all()
        report = audit.verify_chain()
    assert [row.after for row in rows] == [None] * keys.AUTH_FAILURES_AUDITED_PER_ADDRESS + [
        {"suppressed": BAD_KEYS - 10, "window_start": minute.replace(second=0, microsecond=0).isoformat()}
    ]
    assert report.ok
