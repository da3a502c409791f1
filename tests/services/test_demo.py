from sqlalchemy import func, select

from app.config import DEFAULT_CATALOG
from app.models import (
    AuditEntry,
    BillingEvent,
    Customer,
    GracePeriod,
    GraceStatus,
    Plan,
    Subscription,
    SubscriptionStatus,
)
from app.services import audit, demo


def _counts(tx):
    return {
        m.__name__: tx.scalar(select(func.count()).select_from(m))
        for m in (Plan, Customer, Subscription, GracePeriod, AuditEntry, BillingEvent)
    }


def test_demo_data_loads_plans_and_customers_in_every_state(tx, cli_actor, frozen_clock):
    report = demo.load_demo_data(DEFAULT_CATALOG, actor=cli_actor, now=frozen_clock.now)
    assert {"starter", "pro"} <= set(report.plans_created)
    assert {"user-alice", "user-bob"} <= set(report.customers_created)
    statuses = set(tx.scalars(select(Subscription.status)))
    assert statuses == set(SubscriptionStatus)
    bob = tx.scalar(select(Subscription).where(Subscription.user_id == "user-bob"))
    assert bob.status == SubscriptionStatus.PAST_DUE
    grace = tx.scalar(select(GracePeriod).where(GracePeriod.user_id == "user-bob"))
    assert grace.status == GraceStatus.ACTIVE and grace.ends_at > frozen_clock.now
    alice = tx.scalar(select(Subscription).where(Subscription.user_id == "user-alice"))
    assert alice.status == SubscriptionStatus.ACTIVE and alice.credits > 0 and alice.valid_until > frozen_clock.now
    assert audit.verify_chain().ok


def test_demo_data_is_idempotent(tx, cli_actor, frozen_clock):
    demo.load_demo_data(DEFAULT_CATALOG, actor=cli_actor, now=frozen_clock.now)
    before = _counts(tx)
    report = demo.load_demo_data(DEFAULT_CATALOG, actor=cli_actor, now=frozen_clock.now)
    assert report.plans_created == [] and report.customers_created == []
    assert _counts(tx) == before


def test_demo_events_go_through_the_pipeline_with_failures_and_one_dead(tx, cli_actor, frozen_clock):
    report = demo.load_demo_data(DEFAULT_CATALOG, actor=cli_actor, now=frozen_clock.now)
    statuses = dict(tx.execute(select(BillingEvent.event_id, BillingEvent.status)).all())
    assert set(report.events_created) == set(statuses)
    assert statuses["evt_demo_alice_sub"] == statuses["evt_demo_alice_paid"] == "processed"
    assert statuses["evt_demo_alice_late"] == "ignored"
    assert [status for status in statuses.values() if status == "dead"] == ["dead"]
    failed = tx.scalars(select(BillingEvent).where(BillingEvent.status == "failed")).all()
    assert len(failed) >= 3
    assert any("No customer is known for cus_QXgGrace000001" in event.last_error for event in failed)
    assert any("not in the plan catalog" in event.last_error for event in failed)
    assert audit.verify_chain().ok


def test_the_seed_curl_lists_the_failed_demo_events(api, tx, cli_actor, frozen_clock):
    demo.load_demo_data(DEFAULT_CATALOG, actor=cli_actor, now=frozen_clock.now)
    body = api("viewer").get("/v1/admin/billing/events?status=failed").get_json()
    assert body["total"] >= 3
    assert all(item["status"] == "failed" and item["last_error"] for item in body["items"])
