"""The console's front page: what needs attention now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from app.extensions import db
from app.models.audit import AuditEntry
from app.models.events import BillingEvent, EventStatus
from app.models.grace import GracePeriod, GraceStatus
from app.services.actor import Actor
from app.services.permissions import Permission, require

# What people do through the console, API and CLI (not sign-ins, not webhook handlers).
ADMIN_ACTIONS = (
    "entitlements.override",
    "grace.reset",
    "webhook.replay",
    "plans.sync",
    "reconcile.apply",
    "admin_key.create",
    "admin_key.revoke",
)
RECENT_ACTIONS = 10
SOONEST_GRACE_ENDS = 10


@dataclass(frozen=True)
class WaitingEvent:
    event_id: str
    type: str
    user_id: str | None
    received_at: datetime


@dataclass(frozen=True)
class GraceEnding:
    user_id: str
    ends_at: datetime
    reset_count: int


@dataclass(frozen=True)
class Dashboard:
    failed_events: int
    dead_events: int
    oldest_unprocessed: WaitingEvent | None  # the `received` event stored longest ago
    active_grace_periods: int
    grace_ending_soonest: list[GraceEnding]
    recent_actions: list[AuditEntry]


def get_dashboard(*, actor: Actor) -> Dashboard:
    """Counts of events needing a person, the oldest event still waiting, grace periods, recent actions."""
    require(actor, Permission.READ)
    return Dashboard(
        failed_events=_count_events(EventStatus.FAILED),
        dead_events=_count_events(EventStatus.DEAD),
        oldest_unprocessed=_oldest_unprocessed(),
        active_grace_periods=db.session.scalar(
            select(func.count()).select_from(GracePeriod).where(GracePeriod.status == GraceStatus.ACTIVE)
        )
        or 0,
        grace_ending_soonest=[
            GraceEnding(grace.user_id, grace.ends_at, grace.reset_count)
            for grace in db.session.scalars(
                select(GracePeriod)
                .where(GracePeriod.status == GraceStatus.ACTIVE)
                .order_by(GracePeriod.ends_at, GracePeriod.id)
                .limit(SOONEST_GRACE_ENDS)
            )
        ],
        recent_actions=list(
            db.session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action.in_(ADMIN_ACTIONS))
                .order_by(AuditEntry.id.desc())
                .limit(RECENT_ACTIONS)
            )
        ),
    )


def _count_events(status: EventStatus) -> int:
    return db.session.scalar(select(func.count()).select_from(BillingEvent).where(BillingEvent.status == status)) or 0


def _oldest_unprocessed() -> WaitingEvent | None:
    event = db.session.scalar(
        select(BillingEvent)
        .where(BillingEvent.status == EventStatus.RECEIVED)
        .order_by(BillingEvent.received_at, BillingEvent.id)
        .limit(1)
    )
    return WaitingEvent(event.event_id, event.type, event.user_id, event.received_at) if event else None
