"""Grace periods: start, resolve and expire them, each audited in the caller's transaction.

These are the primitives webhook handlers and the retry worker use; support's `reset_grace` builds on them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models.grace import GracePeriod, GraceStatus
from app.services import audit
from app.services.actor import Actor
from app.services.subscriptions import GraceView
from app.services.uow import unit_of_work


def active_grace_for_update(session: Session, user_id: str) -> GracePeriod | None:
    """The user's active grace period, locked for this transaction, or None."""
    return session.scalar(
        select(GracePeriod)
        .where(GracePeriod.user_id == user_id, GracePeriod.status == GraceStatus.ACTIVE)
        .with_for_update()
    )


def start_grace(
    session: Session, user_id: str, *, days: int, reason: str | None, actor: Actor, now: datetime
) -> GraceView | None:
    """Start a grace period of `days` from `now` unless one is active already (then None: nothing changes)."""
    if active_grace_for_update(session, user_id) is not None:
        return None
    grace = GracePeriod(
        user_id=user_id,
        starts_at=now,
        ends_at=now + timedelta(days=days),
        status=GraceStatus.ACTIVE,
        reason=reason[:500] if reason else None,
        created_at=now,
        updated_at=now,
    )
    session.add(grace)
    session.flush()
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
