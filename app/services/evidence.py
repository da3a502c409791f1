"""Reconcile's evidence, kept as events are applied: per user and subscription field, the event that set it last.

When a subscription or invoice event is recorded as processed (`webhooks._record`), each field its payload sets
(`handlers.implied_by`; a field it has no value for is left alone, as `merge_state` leaves it) is kept for its user
with the value, unless an event applied later set that field already ("later": by processed_at, then id, the order
reconcile folds events in). Reconcile then reads at most four small rows per customer instead of every event and
its ~5 KB payload (docs/performance.md, "Reconcile at scale").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Table, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.models.events import EventEvidence
from app.models.subscriptions import SubscriptionStatus
from app.services.handlers import Implied

# Each kept field of `Implied`, and how its value is read back from its text.
FIELDS: dict[str, Callable[[str], Any]] = {
    "status": SubscriptionStatus,
    "price_id": str,
    "valid_until": datetime.fromisoformat,
    "provider_subscription_id": str,
}
_REPLACED = ("value", "applied_at", "event_pk", "event_type", "event_id")


def rows_for(
    implied: Implied, *, user_id: str, applied_at: datetime, event_pk: int, event_type: str, event_id: str
) -> list[dict[str, Any]]:
    """The evidence rows of one applied event: one per field its payload sets."""
    event = {"applied_at": applied_at, "event_pk": event_pk, "event_type": event_type, "event_id": event_id}
    values = {name: getattr(implied, name) for name in FIELDS}
    return [
        {"user_id": user_id, "field": name, "value": _text(value), **event}
        for name, value in values.items()
        if value is not None
    ]


def keep(session: Session, rows: Iterable[dict[str, Any]], table: Table = EventEvidence.__table__) -> None:
    """Keep each row unless its user's field was set by an event applied later."""
    latest = list(_latest(rows).values())
    if not latest:
        return
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table)
    later = tuple_(stmt.excluded.applied_at, stmt.excluded.event_pk) > tuple_(table.c.applied_at, table.c.event_pk)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.user_id, table.c.field],
        set_={name: stmt.excluded[name] for name in _REPLACED},
        where=later,
    )
    session.execute(stmt, latest)


def value_of(field: str, text: str) -> Any:
    """The value a kept row holds, typed again."""
    return FIELDS[field](text)


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _latest(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Of several rows for the same user and field, the one applied last (one statement may change a row once)."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["user_id"], row["field"])
        known = latest.get(key)
        if known is None or (row["applied_at"], row["event_pk"]) > (known["applied_at"], known["event_pk"]):
            latest[key] = row
    return latest
