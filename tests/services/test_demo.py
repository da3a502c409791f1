from sqlalchemy import func, select

from app.config import DEFAULT_CATALOG
from app.models import AuditEntry, Customer, GracePeriod, GraceStatus, Plan, Subscription, SubscriptionStatus
from app.services import audit, demo


def _counts(tx):
    return {
        m.__name__: tx.scalar(select(func.count()).select_from(m))
        for m in (Plan, Customer, Subscription, GracePeriod, AuditEntry)
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
