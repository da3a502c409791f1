"""Signing and building webhook deliveries exactly as Stripe does, for tests."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from app.services.webhooks import signature_header

FIXTURES = Path(__file__).parent / "fixtures" / "stripe"  # real Stripe shapes (API reference examples)
SECRET = "whsec_test_0123456789abcdef0123456789abcdef"
OTHER_SECRET = "whsec_test_rotated_fedcba9876543210fedcba98"
WEBHOOK_URL = "/v1/billing/webhooks"
PRICE = "price_1PgafmB7WZ01zgkW6dKueIc5"  # the fixtures' price


def fixture(name: str) -> dict[str, Any]:
    """A real Stripe object shape from the shared fixtures."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def sign(body: bytes, secret: str = SECRET, *, timestamp: int) -> str:
    """The `Stripe-Signature` header Stripe sends (the SDK tests in test_webhook_signature.py hold it to that)."""
    return signature_header(body, secret, timestamp=timestamp)


def event(event_type: str, obj: dict[str, Any], *, event_id: str, created: datetime) -> dict[str, Any]:
    """A Stripe event envelope around `obj`, shaped like fixtures/stripe/event.json."""
    envelope = fixture("event")
    envelope.update(id=event_id, type=event_type, created=int(created.timestamp()))
    envelope["data"] = {"object": copy.deepcopy(obj)}
    return envelope


def subscription(
    *, sub_id: str, customer: str, user_id: str | None, status: str, price: str, period_end: datetime
) -> dict[str, Any]:
    """fixtures/stripe/subscription.json (a newer API version: the period sits on its items) with these values."""
    sub = fixture("subscription")
    sub.update(id=sub_id, customer=customer, status=status, metadata={"user_id": user_id} if user_id else {})
    item = sub["items"]["data"][0]
    item["price"]["id"] = price
    item["current_period_end"] = int(period_end.timestamp())
    return sub


def invoice(*, customer: str, subscription: str, invoice_id: str = "in_1Pgc6tB7WZ01zgkWu9fdqL6I") -> dict[str, Any]:
    """fixtures/stripe/invoice.json (a newer API version: it names its subscription under `parent`)."""
    inv = fixture("invoice")
    inv.update(id=invoice_id, customer=customer)
    inv["parent"]["subscription_details"]["subscription"] = subscription
    return inv


def deliver(client, document: dict[str, Any], *, now: datetime, secret: str = SECRET, body: bytes | None = None):
    """POST the document to the receiver, signed at `now`."""
    raw = body if body is not None else json.dumps(document).encode()
    headers = {
        "Stripe-Signature": sign(raw, secret, timestamp=int(now.timestamp())),
        "Content-Type": "application/json",
    }
    return client.post(WEBHOOK_URL, data=raw, headers=headers)


def subscribe(client, clock, user_id, *, status="active"):
    """Run a customer.subscription.created event for `user_id` through the receiver; returns its period end."""
    period_end = (clock.now + timedelta(days=30)).replace(microsecond=0)
    obj = subscription(
        sub_id=f"sub_{user_id}",
        customer=f"cus_{user_id}",
        user_id=user_id,
        status=status,
        price=PRICE,
        period_end=period_end,
    )
    created = clock.now - timedelta(hours=1)
    document = event("customer.subscription.created", obj, event_id=f"evt_{user_id}_created", created=created)
    assert deliver(client, document, now=clock.now).get_json()["status"] == "processed"
    return period_end
