"""Reconcile's evidence keeps, per user and field, what the event applied last set, in whatever order it is told."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from app.models import EventEvidence, SubscriptionStatus
from app.services import evidence
from app.services.handlers import Implied
from tests.factories import BillingEventFactory

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def applied(event, status, *, at, valid_until=None):
    implied = Implied(event.type, T0, "cus_a", "user-a", None, status, None, valid_until)
    return evidence.rows_for(
        implied, user_id="user-a", applied_at=at, event_pk=event.id, event_type=event.type, event_id=event.event_id
    )


@pytest.mark.parametrize("order", ["earlier first", "later first", "in one call"])
def test_an_event_applied_earlier_never_replaces_what_a_later_one_set(tx, order):
    first, second, third = (BillingEventFactory(event_id=f"evt_{n}") for n in ("first", "second", "third"))
    period_end = T0 + timedelta(days=30)
    earliest = applied(first, SubscriptionStatus.PAST_DUE, at=T0, valid_until=period_end)
    later = applied(second, SubscriptionStatus.ACTIVE, at=T0 + timedelta(seconds=1))
    latest = applied(third, SubscriptionStatus.UNPAID, at=T0 + timedelta(seconds=2))
    same_instant_lower_id = applied(first, SubscriptionStatus.CANCELED, at=T0 + timedelta(seconds=2))
    batches = {
        "earlier first": [earliest, later, same_instant_lower_id, latest],
        "later first": [latest, same_instant_lower_id, later, earliest],
        "in one call": [later + latest + earliest + same_instant_lower_id],
    }[order]
    for rows in batches:
        evidence.keep(tx, rows)
    kept = tx.execute(select(EventEvidence.field, EventEvidence.value, EventEvidence.event_id)).all()
    assert sorted(kept) == [("status", "unpaid", "evt_third"), ("valid_until", period_end.isoformat(), "evt_first")]
