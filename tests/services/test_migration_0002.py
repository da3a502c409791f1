"""Migration 0002 on a database that already holds a 0001 audit chain (SQLite and PostgreSQL)."""

import importlib.util
from datetime import UTC, datetime
from pathlib import Path

import flask_migrate
import pytest
from alembic import command as alembic_command
from sqlalchemy import select

from app import clock
from app.extensions import db
from app.models import AuditEntry
from app.services import audit
from app.services.actor import Actor
from app.services.audit import GENESIS_HASH
from app.services.uow import unit_of_work
from tests.concurrency import migrated_app

MIGRATION = Path(__file__).parents[2] / "migrations" / "versions" / "0002_keyed_audit_chain.py"


def _revision_0002():
    spec = importlib.util.spec_from_file_location("revision_0002", MIGRATION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_0001_chain(contents: list[dict], *, break_row: int | None = None) -> None:
    """Rows as 0001's code wrote them: plain SHA-256, linked by prev_hash."""
    revision = _revision_0002()
    prev_hash = GENESIS_HASH
    for n, content in enumerate(contents, start=1):
        row = {
            "id": n,
            "created_at": datetime(2026, 11, 20, 9, n, 30, 123456, tzinfo=UTC),
            "actor": "jane",
            "action": "grace.reset",
            "user_id": "user-bob",
            "reason": None,
            "before": None,
            "after": content,
            "context": {"channel": "cli", "request_id": None, "ip": None, "user_agent": None},
            "prev_hash": prev_hash,
        }
        row["hash"] = prev_hash = revision._legacy_hash(revision._row(row))
        if n == break_row:
            row["reason"] = "edited after it was hashed"
        db.session.execute(revision._audit.insert().values(**row))
    db.session.commit()


@pytest.fixture
def app_at_0001(test_env, own_database):
    with migrated_app(test_env, own_database, revision="0001") as app, app.app_context():
        yield app


def test_upgrading_re_signs_the_existing_chain_so_it_verifies_and_grows(app_at_0001):
    _write_0001_chain([{"days": 7}, {"days": 14, "note": "ünïcode"}, {"days": 30}])
    flask_migrate.upgrade()
    rows = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [row.after["days"] for row in rows] == [7, 14, 30]
    assert {row.key_id for row in rows} == {audit.keyring().signing_id}
    report = audit.verify_chain()
    assert report.ok and report.checked == 3

    with unit_of_work() as session:
        newest = audit.record(session, Actor.cli("jane"), "grace.reset", "user-bob", None, {}, now=clock.utcnow())
    assert (newest.id, newest.prev_hash) == (4, rows[-1].hash)
    assert audit.verify_chain().checked == 4


def test_upgrading_refuses_to_seal_a_chain_that_is_already_broken(app_at_0001):
    _write_0001_chain([{"days": 7}, {"days": 14}], break_row=2)
    config = app_at_0001.extensions["migrate"].migrate.get_config()
    with pytest.raises(RuntimeError, match="the audit chain is already broken at row 2"):
        alembic_command.upgrade(config, "head")  # what `flask db upgrade` prints as `Error: ...`, exit status 1
    flask_migrate.upgrade(x_arg=["seal_broken_audit_chain=yes"])
    assert audit.verify_chain().checked == 2
