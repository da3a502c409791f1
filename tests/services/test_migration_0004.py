"""Migration 0004 (the due-events index) on a database that already holds events (SQLite and PostgreSQL)."""

from datetime import UTC, datetime, timedelta

import flask_migrate
import pytest
from sqlalchemy import inspect

from app.extensions import db
from app.models import BillingEvent, EventStatus
from app.services import webhooks
from tests.concurrency import migrated_app

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def app_at_0003(test_env, own_database):
    with migrated_app(test_env, own_database, revision="0003") as app, app.app_context():
        yield app


def event_indexes() -> dict[str, list[str]]:
    return {index["name"]: index["column_names"] for index in inspect(db.engine).get_indexes("billing_events")}


def store(event_id: str, status: EventStatus, next_retry_at: datetime | None) -> None:
    db.session.add(
        BillingEvent(
            event_id=event_id,
            type="customer.updated",
            payload={"id": event_id, "type": "customer.updated", "created": 0},
            status=status,
            attempts=0 if status is EventStatus.RECEIVED else 1,
            next_retry_at=next_retry_at,
            created_at=NOW,
            received_at=NOW,
        )
    )


def test_upgrading_indexes_the_due_events_and_the_claims_run_them_oldest_due_first(app_at_0003):
    store("evt_failed_later", EventStatus.FAILED, NOW + timedelta(hours=1))
    store("evt_queued", EventStatus.RECEIVED, NOW - timedelta(seconds=1))
    store("evt_failed_due", EventStatus.FAILED, NOW - timedelta(minutes=5))
    store("evt_done", EventStatus.PROCESSED, None)
    db.session.commit()

    flask_migrate.upgrade()
    indexes = event_indexes()
    assert indexes["ix_billing_events_due"] == ["next_retry_at", "id"]
    assert "ix_billing_events_status_next_retry_at" not in indexes
    ran = webhooks.drain_due(grace_days=7, now=NOW)
    assert [result.event_id for result in ran] == ["evt_failed_due", "evt_queued"]

    flask_migrate.downgrade(revision="0003")
    indexes = event_indexes()
    assert indexes["ix_billing_events_status_next_retry_at"] == ["status", "next_retry_at"]
    assert "ix_billing_events_due" not in indexes
