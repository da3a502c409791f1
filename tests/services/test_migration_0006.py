"""Migration 0006 (idempotency keys' `applied_at`) on a database that already holds keys (SQLite and PostgreSQL)."""

from datetime import UTC, datetime

import flask_migrate
import pytest
import sqlalchemy as sa
from sqlalchemy import inspect

from app.extensions import db
from app.models import AdminKey, Role
from app.services import idempotency
from tests.concurrency import migrated_app

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)

# idempotency_keys as revision 0005 has it
_keys_0005 = sa.table(
    "idempotency_keys",
    *(sa.column(name) for name in ("admin_key_id", "key", "fingerprint", "state", "response_status")),
    *(sa.column(name) for name in ("created_at", "expires_at")),
    sa.column("response_body", sa.JSON()),
)


@pytest.fixture
def app_at_0005(test_env, own_database):
    with migrated_app(test_env, own_database, revision="0005") as app, app.app_context():
        yield app


def key_columns() -> set[str]:
    return {column["name"] for column in inspect(db.engine).get_columns("idempotency_keys")}


def test_upgrading_keeps_the_keys_and_their_answers_and_an_abandoned_claim_is_taken_over(app_at_0005):
    admin = AdminKey(name="tooling", role=Role.SUPPORT, key_hash="h" * 64, key_prefix="bok_tool", created_at=T0)
    db.session.add(admin)
    db.session.flush()
    fingerprint = idempotency.fingerprint("POST", "/x", {})
    common = {"admin_key_id": admin.id, "fingerprint": fingerprint, "created_at": T0}
    db.session.execute(
        _keys_0005.insert(),
        [
            common
            | {"key": "answered", "state": "done", "response_status": 200, "response_body": {"ok": True}}
            | {"expires_at": T0 + idempotency.KEY_LIFETIME},
            common
            | {"key": "abandoned", "state": "in_flight", "response_status": None, "response_body": None}
            | {"expires_at": T0 + idempotency.KEY_LIFETIME},
        ],
    )
    db.session.commit()

    flask_migrate.upgrade()
    assert "applied_at" in key_columns()
    later = T0 + idempotency.IN_FLIGHT_TIMEOUT
    stored = idempotency.claim(admin.id, "answered", fingerprint, now=later)
    assert (stored.status, stored.body) == (200, {"ok": True})
    assert idempotency.claim(admin.id, "abandoned", fingerprint, now=later) is None  # it died before 0006 could tell

    flask_migrate.downgrade(revision="0005")
    assert "applied_at" not in key_columns()
    assert db.session.execute(sa.select(sa.func.count()).select_from(_keys_0005)).scalar() == 2
