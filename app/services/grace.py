"""Grace periods: support extends (or starts) the time a user keeps access after a failed payment."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models.grace import GracePeriod, GraceStatus
from app.services import audit
from app.services.actor import Actor
from app.services.errors import InvalidInput
from app.services.permissions import Permission, require
from app.services.subscriptions import GraceView, lock_customer, lock_subscription
from app.services.uow import unit_of_work

MIN_RESET_DAYS, MAX_RESET_DAYS = 1, 90


@dataclass(frozen=True)
class GraceChange:
    """A grace period change computed before it is written (before, after, why)."""

    user_id: str
    before: GraceView | None  # None: the change starts a grace period
    after: GraceView
    reason: str | None


@dataclass(frozen=True)
class GraceResetResult:
    user_id: str
    grace_period: GraceView
    audit_id: int
    before: GraceView | None


def plan_grace_reset(
    user_id: str, current: GraceView | None, days: int, *, reason: str | None, now: datetime
) -> GraceChange:
    """Extend `current` to `now + days` (never shortening it), or start one; either way it counts as a reset."""
    if not MIN_RESET_DAYS <= days <= MAX_RESET_DAYS:
        raise InvalidInput("days", f"must be between {MIN_RESET_DAYS} and {MAX_RESET_DAYS}")
    ends_at = now + timedelta(days=days)
    if current is None:
        after = GraceView(starts_at=now, ends_at=ends_at, status=GraceStatus.ACTIVE, reset_count=1, reason=reason)
    else:  # the period keeps the reason it was started for; the reset's reason is in the audit row
        after = replace(current, ends_at=max(current.ends_at, ends_at), reset_count=current.reset_count + 1)
    return GraceChange(user_id, current, after, reason)


def reset_grace(user_id: str, days: int, *, reason: str | None = None, actor: Actor, now: datetime) -> GraceResetResult:
    """Start or extend the user's grace period to `now + days`, audited as `grace.reset`."""
    require(actor, Permission.RESET_GRACE)
    with unit_of_work() as session:
        lock_customer(session, user_id)
        lock_subscription(session, user_id)  # lock order: customer, subscription, grace period, audit chain
        grace = active_grace_for_update(session, user_id)
        change = plan_grace_reset(user_id, GraceView.of(grace) if grace else None, days, reason=reason, now=now)
        apply_grace_change(session, change, grace, now=now)
        entry = audit.record(
            session, actor, "grace.reset", user_id, change.before, change.after, now=now, reason=reason
        )
    return GraceResetResult(user_id, change.after, entry.id, change.before)


def active_grace_for_update(session: Session, user_id: str) -> GracePeriod | None:
    """The user's active grace period, locked for this transaction."""
    return session.scalar(
        select(GracePeriod)
        .where(GracePeriod.user_id == user_id, GracePeriod.status == GraceStatus.ACTIVE)
        .with_for_update()
    )


def apply_grace_change(
    session: Session, change: GraceChange, grace: GracePeriod | None, *, now: datetime
) -> GracePeriod:
    """Write `change` to the (locked) active grace period, or start one; the caller audits and commits."""
    after = change.after
    if grace is None:
        grace = GracePeriod(user_id=change.user_id, starts_at=after.starts_at, created_at=now)
        session.add(grace)
    grace.ends_at, grace.status = after.ends_at, after.status
    grace.reset_count, grace.reason = after.reset_count, after.reason
    grace.updated_at = now
    session.flush()
    return grace
