"""Finding a customer, and everything that happened to one, newest first."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, or_, select

from app.extensions import db
from app.models.audit import AuditEntry
from app.models.customers import Customer
from app.models.events import BillingEvent, EventAttempt
from app.models.grace import GracePeriod
from app.models.subscriptions import Subscription, SubscriptionStatus
from app.services import subscriptions
from app.services.actor import Actor
from app.services.errors import NotFound
from app.services.permissions import Permission, require
from app.services.subscriptions import SubscriptionView

SEARCH_LIMIT = 50
TIMELINE_LIMIT = 100


@dataclass(frozen=True)
class CustomerMatch:
    user_id: str
    email: str | None
    provider_customer_id: str | None
    plan: str | None
    status: SubscriptionStatus | None
    exact: bool  # the query is the whole user id, email or customer id


def search_customers(query: str, *, actor: Actor, limit: int = SEARCH_LIMIT) -> list[CustomerMatch]:
    """Customers whose user id, email (any case) or `cus_` id is `query` or starts with it; exact matches first."""
    require(actor, Permission.READ)
    query = query.strip()
    if not query:
        return []
    email = func.lower(Customer.email)
    exact = or_(Customer.user_id == query, Customer.provider_customer_id == query, email == query.lower())
    prefix = or_(
        Customer.user_id.startswith(query, autoescape=True),
        Customer.provider_customer_id.startswith(query, autoescape=True),
        email.startswith(query.lower(), autoescape=True),
    )
    rows = db.session.execute(
        select(Customer, Subscription.plan, Subscription.status, exact.label("exact"))
        .outerjoin(Subscription, Subscription.user_id == Customer.user_id)
        .where(prefix)
        .order_by(case((exact, 0), else_=1), Customer.user_id)
        .limit(limit)
    )
    return [
        CustomerMatch(customer.user_id, customer.email, customer.provider_customer_id, plan, status, bool(is_exact))
        for customer, plan, status, is_exact in rows
    ]


class EntryKind(enum.StrEnum):
    EVENT = "event"  # a webhook event from the provider
    ATTEMPT = "attempt"  # one run of an event's handler
    ACTION = "action"  # an audited change (by a person, a handler or the worker)
    RECONCILE = "reconcile"  # an audited reconcile fix
    GRACE = "grace"  # a grace period began


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: EntryKind
    title: str  # event type, audit action, ...
    status: str | None = None  # event status, attempt outcome or grace status
    actor: str | None = None
    reason: str | None = None
    detail: str | None = None  # an event's last error, an attempt's error
    event_id: str | None = None  # the event this entry belongs to, for a link
    audit_id: int | None = None
    before: Any = None
    after: Any = None
    ends_at: datetime | None = None  # grace periods
    reset_count: int | None = None  # grace periods


@dataclass(frozen=True)
class CustomerPage:
    user_id: str
    email: str | None
    provider_customer_id: str | None
    subscription: SubscriptionView | None
    timeline: list[TimelineEntry]  # newest first
    more: bool  # older entries exist beyond the timeline's limit


def get_customer_page(user_id: str, *, actor: Actor, limit: int = TIMELINE_LIMIT) -> CustomerPage:
    """The customer, their subscription, and one timeline of events, attempts, audited changes and grace periods."""
    require(actor, Permission.READ)
    customer = db.session.scalar(select(Customer).where(Customer.user_id == user_id))
    if customer is None:
        raise NotFound(f"No customer has the user id {user_id!r}.")
    # Each source gives its newest `limit + 1`: enough to fill the merged page and tell whether more exist.
    merged = sorted(
        [
            *_events(user_id, limit + 1),
            *_attempts(user_id, limit + 1),
            *_audit(user_id, limit + 1),
            *_grace(user_id, limit + 1),
        ],
        key=lambda entry: entry.at,
        reverse=True,
    )
    return CustomerPage(
        user_id=customer.user_id,
        email=customer.email,
        provider_customer_id=customer.provider_customer_id,
        subscription=_subscription(user_id, actor),
        timeline=merged[:limit],
        more=len(merged) > limit,
    )


def _subscription(user_id: str, actor: Actor) -> SubscriptionView | None:
    try:
        return subscriptions.get_subscription(user_id, actor=actor)
    except NotFound:  # a known customer without a subscription
        return None


def _events(user_id: str, limit: int) -> list[TimelineEntry]:
    events = db.session.scalars(
        select(BillingEvent)
        .where(BillingEvent.user_id == user_id)
        .order_by(BillingEvent.created_at.desc(), BillingEvent.id.desc())
        .limit(limit)
    )
    return [
        TimelineEntry(
            at=event.created_at,
            kind=EntryKind.EVENT,
            title=event.type,
            status=event.status.value,
            detail=event.last_error,
            event_id=event.event_id,
        )
        for event in events
    ]


def _attempts(user_id: str, limit: int) -> list[TimelineEntry]:
    rows = db.session.execute(
        select(EventAttempt, BillingEvent.event_id, BillingEvent.type)
        .join(BillingEvent, EventAttempt.event_pk == BillingEvent.id)
        .where(BillingEvent.user_id == user_id)
        .order_by(EventAttempt.at.desc(), EventAttempt.id.desc())
        .limit(limit)
    )
    return [
        TimelineEntry(
            at=attempt.at,
            kind=EntryKind.ATTEMPT,
            title=f"{attempt.trigger.value} of {event_type}",
            status=attempt.outcome.value,
            detail=attempt.error,
            event_id=event_id,
        )
        for attempt, event_id, event_type in rows
    ]


def _audit(user_id: str, limit: int) -> list[TimelineEntry]:
    entries = db.session.scalars(
        select(AuditEntry).where(AuditEntry.user_id == user_id).order_by(AuditEntry.id.desc()).limit(limit)
    )
    return [
        TimelineEntry(
            at=entry.created_at,
            kind=EntryKind.RECONCILE if entry.action == "reconcile.apply" else EntryKind.ACTION,
            title=entry.action,
            actor=entry.actor,
            reason=entry.reason,
            audit_id=entry.id,
            before=entry.before,
            after=entry.after,
        )
        for entry in entries
    ]


def _grace(user_id: str, limit: int) -> list[TimelineEntry]:
    periods = db.session.scalars(
        select(GracePeriod)
        .where(GracePeriod.user_id == user_id)
        .order_by(GracePeriod.starts_at.desc(), GracePeriod.id.desc())
        .limit(limit)
    )
    return [
        TimelineEntry(
            at=grace.starts_at,
            kind=EntryKind.GRACE,
            title="grace period",
            status=grace.status.value,
            reason=grace.reason,
            ends_at=grace.ends_at,
            reset_count=grace.reset_count,
        )
        for grace in periods
    ]
