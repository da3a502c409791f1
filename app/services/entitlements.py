"""Entitlement overrides: support sets or adjusts a user's credits, plan and expiry, always through one change."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.extensions import db
from app.models.plans import Plan
from app.models.subscriptions import Subscription, SubscriptionStatus
from app.services import audit
from app.services.actor import Actor
from app.services.errors import InvalidInput, RuleViolation
from app.services.permissions import Permission, require
from app.services.subscriptions import SubscriptionView, lock_customer, lock_subscription, require_customer, view
from app.services.uow import unit_of_work

MAX_CREDITS = 2**31 - 1  # the credits column is a 32-bit integer on PostgreSQL


@dataclass(frozen=True)
class Entitlement:
    """The part of a subscription an override may change."""

    plan: str | None
    status: SubscriptionStatus
    credits: int
    valid_until: datetime | None

    @classmethod
    def of(cls, subscription: Subscription) -> Entitlement:
        return cls(subscription.plan, subscription.status, subscription.credits, subscription.valid_until)


# A customer without a subscription gets this one, with the override's fields applied on top.
NEW_SUBSCRIPTION = Entitlement(plan=None, status=SubscriptionStatus.ACTIVE, credits=0, valid_until=None)


@dataclass(frozen=True)
class OverrideRequest:
    """What support asked for; a field left None is not changed."""

    credits: int | None = None
    credits_delta: int | None = None
    plan: str | None = None
    valid_until: datetime | None = None

    def sent(self) -> list[str]:
        return [field.name for field in fields(self) if getattr(self, field.name) is not None]


@dataclass(frozen=True)
class Change:
    """An override computed before anything is written (before, after, why), so a preview or undo can reuse it."""

    user_id: str
    before: Entitlement | None  # None: the override creates the subscription
    after: Entitlement
    reason: str | None


@dataclass(frozen=True)
class OverrideResult:
    change: Change
    subscription: SubscriptionView
    audit_id: int


def plan_override(
    user_id: str, current: Entitlement | None, request: OverrideRequest, *, reason: str | None, now: datetime
) -> Change:
    """The change `request` makes to `current` (merge: fields not sent stay); InvalidInput or RuleViolation if not."""
    sent = request.sent()
    if not sent:
        raise InvalidInput("_schema", "send at least one of credits, credits_delta, plan or valid_until")
    if request.credits is not None and request.credits_delta is not None:
        raise InvalidInput("credits", "send credits or credits_delta, not both", "credits_delta")
    if request.valid_until is not None and request.valid_until <= now:
        raise InvalidInput("valid_until", "must be in the future")
    base = current or NEW_SUBSCRIPTION
    after = replace(
        base,
        plan=request.plan or base.plan,
        credits=_new_balance(base.credits, request),
        valid_until=request.valid_until or base.valid_until,
    )
    if after == current:
        raise InvalidInput(sent[0], "nothing would change: the subscription has these values already", *sent[1:])
    return Change(user_id, current, after, reason)


def override_entitlements(
    user_id: str,
    *,
    credits: int | None = None,
    credits_delta: int | None = None,
    plan: str | None = None,
    valid_until: datetime | None = None,
    reason: str | None = None,
    actor: Actor,
    now: datetime,
) -> OverrideResult:
    """Merge the override into the user's subscription (creating one for a customer without), audited."""
    require(actor, Permission.OVERRIDE_ENTITLEMENTS)
    request = OverrideRequest(credits, credits_delta, plan, valid_until)
    with unit_of_work() as session:
        lock_customer(session, user_id)
        subscription = lock_subscription(session, user_id)
        change = _plan_for(session, subscription, user_id, request, reason=reason, now=now)
        before = view(subscription) if subscription else None
        subscription = apply_change(session, change, subscription, now=now)
        # An override leaves grace periods alone: the one `before` read is still the one in force.
        after = view(subscription, before.grace_period) if before else view(subscription)
        entry = audit.record(session, actor, "entitlements.override", user_id, before, after, now=now, reason=reason)
    return OverrideResult(change, after, entry.id)


def preview_override(
    user_id: str,
    *,
    credits: int | None = None,
    credits_delta: int | None = None,
    plan: str | None = None,
    valid_until: datetime | None = None,
    reason: str | None = None,
    actor: Actor,
    now: datetime,
) -> Change:
    """The change `override_entitlements` would make now, refused as it would be; nothing is written or audited."""
    require(actor, Permission.OVERRIDE_ENTITLEMENTS)
    session = db.session
    require_customer(session, user_id)
    subscription = session.scalar(select(Subscription).where(Subscription.user_id == user_id))
    request = OverrideRequest(credits, credits_delta, plan, valid_until)
    return _plan_for(session, subscription, user_id, request, reason=reason, now=now)


def _plan_for(
    session: Session,
    subscription: Subscription | None,
    user_id: str,
    request: OverrideRequest,
    *,
    reason: str | None,
    now: datetime,
) -> Change:
    """`plan_override` on the stored subscription, after checking that a requested plan is an active one."""
    if request.plan is not None:
        _require_active_plan(session, request.plan)
    current = Entitlement.of(subscription) if subscription else None
    return plan_override(user_id, current, request, reason=reason, now=now)


def apply_change(session: Session, change: Change, subscription: Subscription | None, *, now: datetime) -> Subscription:
    """Write `change` to the (locked) subscription, or create it; the caller audits and commits."""
    after = change.after
    if subscription is None:
        subscription = Subscription(user_id=change.user_id, created_at=now)
        session.add(subscription)
    subscription.plan, subscription.status = after.plan, after.status
    subscription.credits, subscription.valid_until = after.credits, after.valid_until
    subscription.updated_at = now
    session.flush()
    return subscription


def _new_balance(credits: int, request: OverrideRequest) -> int:
    if request.credits is not None:
        return request.credits
    if request.credits_delta is None:
        return credits
    balance = credits + request.credits_delta
    if balance < 0:
        raise RuleViolation(
            f"credits would go below 0: the balance is {credits} and credits_delta is {request.credits_delta}."
        )
    if balance > MAX_CREDITS:
        raise RuleViolation(f"credits would exceed {MAX_CREDITS}: the balance is {credits}.")
    return balance


def _require_active_plan(session: Session, code: str) -> None:
    if session.scalar(select(Plan.id).where(Plan.code == code, Plan.active.is_(True))) is None:
        raise InvalidInput("plan", f"no active plan has the code {code!r}; GET /v1/admin/billing/plans lists them")
