"""Reconcile's evidence keeps, per field, what the event applied last set, in whatever order it is told."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from app.models import SubscriptionStatus
from app.services import evidence
from app.services.evidence import Applied
from app.services.handlers import Implied

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
PERIOD_END = T0 + timedelta(days=30)


def implied(status, valid_until=None):
    return Implied("invoice.paid", T0, "cus_a", "user-a", None, status, None, valid_until)


EVENTS = [  # (what it implied, the event as applied)
    (implied(SubscriptionStatus.PAST_DUE, PERIOD_END), Applied(T0, 1, "invoice.payment_failed", "evt_first")),
    (implied(SubscriptionStatus.ACTIVE), Applied(T0 + timedelta(seconds=1), 2, "invoice.paid", "evt_second")),
    (implied(SubscriptionStatus.UNPAID), Applied(T0 + timedelta(seconds=2), 4, "invoice.paid", "evt_latest")),
    # applied at the same instant as evt_latest, with a lower id: before it in reconcile's order
    (implied(SubscriptionStatus.CANCELED), Applied(T0 + timedelta(seconds=2), 3, "invoice.paid", "evt_same_instant")),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(EVENTS)))))
def test_each_field_keeps_the_event_applied_last_whatever_order_they_arrive_in(order):
    document = None
    for index in order:
        document = evidence.merged(document, *EVENTS[index])
    kept = {kept.field: (kept.value, kept.event.event_id) for kept in evidence.fields(document)}
    assert kept == {"status": ("unpaid", "evt_latest"), "valid_until": (PERIOD_END, "evt_first")}


def test_a_document_reads_back_what_was_kept():
    [status] = evidence.fields(evidence.merged(None, *EVENTS[1]))
    assert status == evidence.Kept("status", SubscriptionStatus.ACTIVE, EVENTS[1][1])
    assert list(evidence.fields(None)) == []
