"""Grace periods: the time a user keeps access after a failed payment.

Support extends (or starts) one with `reset_grace`; webhook handlers and the retry worker use the primitives
`start_grace`, `resolve_grace` and `expire_due_grace_periods`, each audited in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.extensions import db
from app.models.grace import GracePeriod, GraceStatus
from app.services import audit
from app.services.actor import Actor
from app.services.errors import Conflict, InvalidInput
from app.services.permissions import Permission, require
from app.services.subscriptions import GraceView, active_grace, lock_customer, lock_subscription, require_customer
from app.services.uow import unit_of_work

MIN_RESET_DAYS, MAX_RESET_DAYS = 1, 90
ACTIVE_INDEX = "uq_billing_grace_periods_active_user"  # at most one active grace period per user


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


def preview_grace_reset(
    user_id: str, days: int, *, reason: str | None = None, actor: Actor, now: datetime
) -> GraceChange:
    """The change `reset_grace` would make now, refused as it would be; nothing is written or audited."""
    require(actor, Permission.RESET_GRACE)
    require_customer(db.session, user_id)
    return plan_grace_reset(user_id, active_grace(user_id), days, reason=reason, now=now)


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
    """Write `change` to the (locked) active grace period, or start one; the caller audits and commits.

    Callers lock the customer first, so two of them cannot both find no active grace period and both start one;
    should one not, the second insert is a Conflict (try again), not a database error.
    """
    after = change.after
    starts = grace is None
    if starts:
        grace = GracePeriod(user_id=change.user_id, starts_at=after.starts_at, created_at=now)
        session.add(grace)
    grace.ends_at, grace.status = after.ends_at, after.status
    grace.reset_count, grace.reason = after.reset_count, after.reason
    grace.updated_at = now
    try:
        session.flush()
    except IntegrityError as exc:
        if starts and _violates_active_index(exc):
            raise Conflict(
                f"Another change started a grace period for {change.user_id} at the same moment; try again."
            ) from None
        raise
    return grace


def _violates_active_index(exc: IntegrityError) -> bool:
    """Whether `exc` is a second active grace period for a user (PostgreSQL names the index, SQLite its column)."""
    diag = getattr(exc.orig, "diag", None)
    if diag is not None:
        return diag.constraint_name == ACTIVE_INDEX
    return "UNIQUE constraint failed: billing_grace_periods.user_id" in str(exc.orig)


def start_grace(
    session: Session, user_id: str, *, days: int, reason: str | None, actor: Actor, now: datetime
) -> GraceView | None:
    """Start a grace period of `days` from `now` unless one is active already (then None: nothing changes)."""
    if active_grace_for_update(session, user_id) is not None:
        return None
    reason = reason[:500] if reason else None
    after = GraceView(
        starts_at=now, ends_at=now + timedelta(days=days), status=GraceStatus.ACTIVE, reset_count=0, reason=reason
    )
    grace = apply_grace_change(session, GraceChange(user_id, None, after, reason), None, now=now)
    started = GraceView.of(grace)
    audit.record(session, actor, "grace.start", user_id, None, started, now=now, reason=reason)
    return started


def resolve_grace(
    session: Session, user_id: str, *, reason: str | None, actor: Actor, now: datetime
) -> GraceView | None:
    """End the user's active grace period because the payment came through; None if there was none."""
    return _close(session, active_grace_for_update(session, user_id), GraceStatus.RESOLVED, reason, actor, now)


def expire_due_grace_periods(session: Session, *, actor: Actor, now: datetime, limit: int = 500) -> list[str]:
    """Mark active grace periods whose end has passed as expired; the user ids, oldest end first."""
    due = session.scalars(
        select(GracePeriod)
        .where(GracePeriod.status == GraceStatus.ACTIVE, GracePeriod.ends_at <= now)
        .order_by(GracePeriod.ends_at, GracePeriod.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for grace in due:
        _close(session, grace, GraceStatus.EXPIRED, "grace period ended", actor, now)
    return [grace.user_id for grace in due]


def _close(
    session: Session, grace: GracePeriod | None, status: GraceStatus, reason: str | None, actor: Actor, now: datetime
) -> GraceView | None:
    if grace is None:
        return None
    before = GraceView.of(grace)
    grace.status = status
    grace.updated_at = now
    session.flush()
    after = GraceView.of(grace)
    action = "grace.resolve" if status is GraceStatus.RESOLVED else "grace.expire"
    audit.record(session, actor, action, grace.user_id, before, after, now=now, reason=reason)
    return after


def expire_grace_periods(*, actor: Actor, now: datetime) -> list[str]:
    """Expire every active grace period whose end has passed, in one transaction; the user ids."""
    with unit_of_work() as session:
        return expire_due_grace_periods(session, actor=actor, now=now)
