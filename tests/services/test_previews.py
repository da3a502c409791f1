"""Previews of the override and the grace reset: the change the apply would make, its refusals, nothing written."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.models import AuditEntry, GracePeriod, Role, Subscription
from app.services import entitlements, grace
from app.services.actor import Actor, Channel
from app.services.errors import InvalidInput, NotFound, PermissionDenied, RuleViolation
from tests.factories import CustomerFactory, GracePeriodFactory, PlanFactory, SubscriptionFactory

AGENT = Actor(name="agent", role=Role.SUPPORT, channel=Channel.CONSOLE)
VIEWER = Actor(name="reader", role=Role.VIEWER, channel=Channel.CONSOLE)


def written(tx) -> tuple[int, int, int]:
    """Audit rows, subscriptions and grace periods: a preview adds to none of them."""
    models = (AuditEntry, Subscription, GracePeriod)
    return tuple(tx.scalar(select(func.count()).select_from(model)) for model in models)


def test_an_override_preview_is_the_change_the_apply_makes(tx, frozen_clock):
    PlanFactory(code="team")
    SubscriptionFactory(user_id="user-alice", plan="pro", credits=100)
    before = written(tx)
    change = entitlements.preview_override(
        "user-alice", credits_delta=500, plan="team", reason="goodwill", actor=AGENT, now=frozen_clock.now
    )
    assert (change.before.credits, change.before.plan) == (100, "pro")
    assert (change.after.credits, change.after.plan) == (600, "team")
    assert written(tx) == before

    result = entitlements.override_entitlements(
        "user-alice", credits_delta=500, plan="team", reason="goodwill", actor=AGENT, now=frozen_clock.now
    )
    assert result.change == change


def test_an_override_preview_for_a_customer_without_a_subscription_starts_one(tx, frozen_clock):
    CustomerFactory(user_id="user-new")
    change = entitlements.preview_override("user-new", credits=50, actor=AGENT, now=frozen_clock.now)
    assert change.before is None and change.after.credits == 50
    assert written(tx)[1] == 0


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"user_id": "user-ghost", "credits": 5}, NotFound),
        ({"user_id": "user-alice", "plan": "legacy"}, InvalidInput),
        ({"user_id": "user-alice", "credits_delta": -500}, RuleViolation),
        ({"user_id": "user-alice", "credits": 100}, InvalidInput),
    ],
)
def test_an_override_preview_refuses_what_the_apply_refuses(tx, frozen_clock, kwargs, error):
    PlanFactory(code="legacy", active=False)
    SubscriptionFactory(user_id="user-alice", credits=100)
    with pytest.raises(error):
        entitlements.preview_override(**kwargs, actor=AGENT, now=frozen_clock.now)
    with pytest.raises(error):
        entitlements.override_entitlements(**kwargs, actor=AGENT, now=frozen_clock.now)


def test_a_grace_preview_never_shortens_the_period_and_writes_nothing(tx, frozen_clock):
    ends = frozen_clock.now + timedelta(days=30)
    GracePeriodFactory(user_id="user-bob", ends_at=ends, reset_count=2)
    before = written(tx)
    change = grace.preview_grace_reset("user-bob", 14, actor=AGENT, now=frozen_clock.now)
    assert (change.after.ends_at, change.after.reset_count) == (ends, 3)
    assert written(tx) == before
    assert tx.scalar(select(GracePeriod.reset_count)) == 2


def test_a_grace_preview_starts_a_period_where_none_is_active(tx, frozen_clock):
    CustomerFactory(user_id="user-bob")
    change = grace.preview_grace_reset("user-bob", 14, actor=AGENT, now=frozen_clock.now)
    assert change.before is None and change.after.ends_at == frozen_clock.now + timedelta(days=14)
    assert written(tx)[2] == 0


@pytest.mark.parametrize("user_id, days, error", [("user-ghost", 7, NotFound), ("user-bob", 91, InvalidInput)])
def test_a_grace_preview_refuses_what_the_apply_refuses(tx, frozen_clock, user_id, days, error):
    CustomerFactory(user_id="user-bob")
    with pytest.raises(error):
        grace.preview_grace_reset(user_id, days, actor=AGENT, now=frozen_clock.now)


def test_a_viewer_may_not_preview_a_change(tx, frozen_clock):
    SubscriptionFactory(user_id="user-alice")
    with pytest.raises(PermissionDenied):
        entitlements.preview_override("user-alice", credits=5, actor=VIEWER, now=frozen_clock.now)
    with pytest.raises(PermissionDenied):
        grace.preview_grace_reset("user-alice", 5, actor=VIEWER, now=frozen_clock.now)
