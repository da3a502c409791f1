"""Reconcile's evidence, kept as events are applied: per subscription field, the event that set it last.

When a handler applies a subscription or invoice event (`handlers.keep_evidence`), each field its payload sets
(`handlers.implied_by`; a field it has no value for is left alone, as `merge_state` leaves it) is kept on its
customer's row (`billing_customers.evidence`) with the value, unless an event applied later set that field already
("later": by processed_at, then id, the order reconcile folds events in). Every handler holds the customer's row
lock, so two events of one customer are kept one after the other. Reconcile reads this one document with each
customer instead of every event and its ~5 KB payload (docs/performance.md, "Reconcile at scale").

The document: `{field: [value as text, applied_at (ISO 8601), event pk, event type, event id]}`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from app.models.subscriptions import SubscriptionStatus

if TYPE_CHECKING:
    from app.services.handlers import Implied

# Each kept field of `Implied`, and how its value is read back from its text.
FIELDS: dict[str, Callable[[str], Any]] = {
    "status": SubscriptionStatus,
    "price_id": str,
    "valid_until": datetime.fromisoformat,
    "provider_subscription_id": str,
}


class Applied(NamedTuple):
    """An applied event, as evidence names it."""

    at: datetime  # its processed_at
    pk: int
    type: str
    event_id: str


class Kept(NamedTuple):
    """One field as the evidence holds it: its value and the event that set it last."""

    field: str
    value: Any
    event: Applied


def merged(document: dict[str, list] | None, implied: Implied, event: Applied) -> dict[str, list]:
    """`document` with what `implied` sets, field by field, except where an event applied later set it already."""
    kept = dict(document or {})
    for name in FIELDS:
        value = getattr(implied, name)
        known = kept.get(name)
        if value is not None and (known is None or _order(event) > _order(_applied(known))):
            kept[name] = [_text(value), event.at.isoformat(), event.pk, event.type, event.event_id]
    return kept


def fields(document: dict[str, list] | None) -> Iterator[Kept]:
    """The fields `document` holds, typed again."""
    for name, (text, *event) in (document or {}).items():
        yield Kept(name, FIELDS[name](text), _applied(event))


def _applied(entry: list) -> Applied:
    at, pk, event_type, event_id = entry[-4:]
    return Applied(datetime.fromisoformat(at), pk, event_type, event_id)


def _order(event: Applied) -> tuple[datetime, int]:
    return event.at, event.pk


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
