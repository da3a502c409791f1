"""Browsing billing events: filtered keyset pages and one event with its payload and attempts."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select

from app.extensions import db
from app.models.events import AttemptTrigger, BillingEvent, EventAttempt, EventStatus
from app.services.actor import Actor
from app.services.errors import NotFound
from app.services.pagination import Page, keyset_page, where_matching
from app.services.permissions import Permission, require


@dataclass(frozen=True)
class EventFilter:
    """The filters the list, the console and replay share; None means any."""

    status: EventStatus | None = None
    type: str | None = None
    user_id: str | None = None
    since: datetime | None = None  # provider `created` at or after
    until: datetime | None = None  # provider `created` before

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


FILTER_FIELDS = tuple(f.name for f in fields(EventFilter))


@dataclass(frozen=True)
class EventView:
    event_id: str
    type: str
    user_id: str | None
    status: EventStatus
    attempts: int
    last_error: str | None
    next_retry_at: datetime | None
    created_at: datetime
    received_at: datetime
    processed_at: datetime | None

    @classmethod
    def of(cls, event: BillingEvent) -> EventView:
        return cls(**{f.name: getattr(event, f.name) for f in fields(EventView)})


@dataclass(frozen=True)
class AttemptView:
    at: datetime
    trigger: AttemptTrigger
    outcome: EventStatus
    error: str | None  # the failure, or why the event was ignored (e.g. stale)
    duration_ms: int

    @classmethod
    def of(cls, attempt: EventAttempt) -> AttemptView:
        return cls(attempt.at, attempt.trigger, attempt.outcome, attempt.error, attempt.duration_ms)


@dataclass(frozen=True)
class EventDetail(EventView):
    payload: dict[str, Any]
    attempt_history: list[AttemptView]


def filtered(filters: EventFilter) -> Select:
    """Events matching `filters` (unordered)."""
    return where_matching(
        select(BillingEvent),
        [
            (BillingEvent.status, filters.status),
            (BillingEvent.type, filters.type),
            (BillingEvent.user_id, filters.user_id),
        ],
        BillingEvent.created_at,
        filters.since,
        filters.until,
    )


def list_events(
    filters: EventFilter, *, actor: Actor, after: tuple[datetime, int] | None = None, skip: int = 0, limit: int
) -> Page[EventView]:
    """Events matching `filters`, newest first by the provider's `created` (then id), one page at a time."""
    require(actor, Permission.READ)
    page = keyset_page(
        db.session,
        filtered(filters),
        [BillingEvent.created_at, BillingEvent.id],
        lambda event: (event.created_at, event.id),
        after=after,
        skip=skip,
        limit=limit,
    )
    return Page([EventView.of(event) for event in page.items], page.total, page.next_cursor, page.total_is_estimate)


def get_event(event_id: str, *, actor: Actor) -> EventDetail:
    """One event with its stored payload and every processing attempt, oldest first."""
    require(actor, Permission.READ)
    event = db.session.scalar(select(BillingEvent).where(BillingEvent.event_id == event_id))
    if event is None:
        raise NotFound(f"No event has the id {event_id!r}.")
    return EventDetail(
        **vars(EventView.of(event)),
        payload=event.payload,
        attempt_history=[AttemptView.of(attempt) for attempt in event.attempt_history],
    )
