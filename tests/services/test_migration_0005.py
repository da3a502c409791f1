"""Migration 0005 on a database that already holds events: the evidence of the processed ones is kept, and
reconcile reports from it what it reported from the payloads (SQLite and PostgreSQL)."""

from datetime import UTC, datetime, timedelta

import flask_migrate
import pytest
import sqlalchemy as sa
from sqlalchemy import inspect, select

from app.extensions import db
from app.models import Customer
from app.services import evidence, reconcile
from app.services.actor import Actor
from tests.concurrency import migrated_app
from tests.factories import PlanFactory, SubscriptionFactory
from tests.webhooks import PRICE, event, fixture, invoice, subscription

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
PERIOD_END = T0 + timedelta(days=30)

# billing_events as revision 0004 has it
_events_0004 = sa.table(
    "billing_events",
    *(sa.column(name) for name in ("event_id", "type", "user_id", "status", "attempts", "created_at")),
    *(sa.column(name) for name in ("received_at", "processed_at", "updated_at")),
    sa.column("payload", sa.JSON()),
)


@pytest.fixture
def app_at_0004(test_env, own_database):
    with migrated_app(test_env, own_database, revision="0004") as app, app.app_context():
        yield app


def _store(event_id, event_type, obj, status, minute, *, user_id="user-a"):
    """An event as 0004's code stored it, `minute` minutes after T0 (processed then, unless it failed)."""
    at = T0 + timedelta(minutes=minute)
    document = event(event_type, obj, event_id=event_id, created=at)
    done = status in ("processed", "ignored")
    db.session.execute(
        _events_0004.insert().values(
            event_id=event_id,
            type=event_type,
            user_id=user_id,
            payload=document,
            status=status,
            attempts=1,
            created_at=at,
            received_at=at,
            processed_at=at if done else None,
            updated_at=at,
        )
    )


def _history_at_0004():
    """user-a: created (active), payment failed (past due), a stale update, a failed one, and an unreadable
    processed invoice; the stored row still says active. A catalog event for nobody."""
    PlanFactory(code="starter-test", provider_price_id=PRICE)
    SubscriptionFactory(
        user_id="user-a", plan="starter-test", status="active", valid_until=PERIOD_END, provider_subscription_id="sub_a"
    )
    sub = subscription(
        sub_id="sub_a", customer="cus_a", user_id="user-a", status="active", price=PRICE, period_end=PERIOD_END
    )
    _store("evt_created", "customer.subscription.created", sub, "processed", 0)
    _store(
        "evt_failed_payment", "invoice.payment_failed", invoice(customer="cus_a", subscription="sub_a"), "processed", 1
    )
    _store("evt_stale", "customer.subscription.updated", {**sub, "status": "canceled"}, "ignored", 2)
    _store("evt_not_yet", "customer.subscription.updated", {**sub, "status": "canceled"}, "failed", 3)
    _store("evt_catalog", "price.updated", fixture("price"), "processed", 4, user_id=None)
    _store("evt_unreadable", "invoice.paid", "not an object", "processed", 5)
    db.session.commit()


def _evidence():
    document = db.session.scalar(select(Customer.evidence).where(Customer.user_id == "user-a"))
    return {kept.field: (kept.value, kept.event.event_id) for kept in evidence.fields(document)}


def test_upgrading_keeps_the_evidence_of_processed_events_and_reconcile_reads_it(app_at_0004, capsys):
    _history_at_0004()
    flask_migrate.upgrade()

    assert _evidence() == {
        "status": ("past_due", "evt_failed_payment"),
        "price_id": (PRICE, "evt_created"),
        "valid_until": (PERIOD_END, "evt_created"),
        "provider_subscription_id": ("sub_a", "evt_created"),
    }
    said = capsys.readouterr().err  # what `flask db upgrade` prints
    assert "event 6 (invoice.paid) left out of the evidence: The payload has no data.object to read." in said

    page = reconcile.find_mismatches(actor=Actor.cli("jane"))
    assert [(m.user_id, m.kind, m.expected, m.actual, m.why) for m in page.mismatches] == [
        ("user-a", "status", "past_due", "active", "invoice.payment_failed evt_failed_payment")
    ]


def test_downgrading_drops_the_evidence(app_at_0004):
    _history_at_0004()
    flask_migrate.upgrade()
    flask_migrate.downgrade(revision="0004")
    inspector = inspect(db.engine)
    assert "evidence" not in {column["name"] for column in inspector.get_columns("billing_customers")}
    assert "ix_billing_admin_audit_manual_changes" not in {
        index["name"] for index in inspector.get_indexes("billing_admin_audit")
    }
    assert db.session.execute(select(sa.func.count()).select_from(_events_0004)).scalar() == 6
