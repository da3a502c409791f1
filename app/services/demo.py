"""Demo data: the shipped plans, a handful of customers in every state, and signed webhook events (idempotent)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from app.models.customers import Customer
from app.models.grace import GracePeriod, GraceStatus
from app.models.plans import Plan
from app.models.subscriptions import Subscription, SubscriptionStatus
from app.services import audit, webhooks
from app.services.actor import Actor
from app.services.catalog import load_catalog
from app.services.subscriptions import GraceView, view
from app.services.uow import unit_of_work


@dataclass(frozen=True)
class DemoCustomer:
    user_id: str
    email: str
    provider_customer_id: str
    provider_subscription_id: str
    plan: str
    status: SubscriptionStatus
    credits: int
    valid_for: timedelta  # valid_until relative to now (negative: lapsed)
    grace: tuple[timedelta, timedelta, GraceStatus] | None = None  # starts, ends (relative), status


DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)
DEMO_CUSTOMERS = (
    DemoCustomer(
        "user-alice",
        "alice@example.com",
        "cus_QXgAlice00001",
        "sub_1PgbAlice000001",
        "pro",
        SubscriptionStatus.ACTIVE,
        8200,
        21 * DAY,
    ),
    DemoCustomer(
        "user-bob",
        "bob@example.com",
        "cus_QXgBob0000001",
        "sub_1PgbBob00000001",
        "starter",
        SubscriptionStatus.PAST_DUE,
        120,
        -2 * DAY,
        (-2 * DAY, 5 * DAY, GraceStatus.ACTIVE),
    ),
    DemoCustomer(
        "user-carol",
        "carol@example.com",
        "cus_QXgCarol00001",
        "sub_1PgbCarol000001",
        "team",
        SubscriptionStatus.TRIALING,
        50000,
        10 * DAY,
    ),
    DemoCustomer(
        "user-dave",
        "dave@example.com",
        "cus_QXgDave000001",
        "sub_1PgbDave0000001",
        "pro",
        SubscriptionStatus.CANCELED,
        0,
        -30 * DAY,
    ),
    DemoCustomer(
        "user-erin",
        "erin@example.com",
        "cus_QXgErin000001",
        "sub_1PgbErin0000001",
        "starter",
        SubscriptionStatus.UNPAID,
        0,
        -12 * DAY,
        (-19 * DAY, -12 * DAY, GraceStatus.EXPIRED),
    ),
    DemoCustomer(
        "user-frank",
        "frank@example.com",
        "cus_QXgFrank00001",
        "sub_1PgbFrank000001",
        "pro-annual",
        SubscriptionStatus.ACTIVE,
        96000,
        200 * DAY,
    ),
)


@dataclass
class DemoReport:
    plans_created: list[str] = field(default_factory=list)
    customers_created: list[str] = field(default_factory=list)
    events_created: list[str] = field(default_factory=list)


def load_demo_data(catalog_path: Path, *, actor: Actor, now: datetime, grace_days: int = 7) -> DemoReport:
    """Add whatever part of the demo data is missing; running it again changes nothing."""
    report = DemoReport()
    with unit_of_work() as session:
        existing = set(session.scalars(select(Plan.code)))
        for spec in load_catalog(catalog_path):
            if spec["code"] not in existing:
                session.add(Plan(**spec, created_at=now, updated_at=now))
                report.plans_created.append(spec["code"])
    for demo in DEMO_CUSTOMERS:
        if _add_customer(demo, actor=actor, now=now):
            report.customers_created.append(demo.user_id)
    report.events_created = _deliver_events(grace_days=grace_days, now=now)
    return report


def _add_customer(demo: DemoCustomer, *, actor: Actor, now: datetime) -> bool:
    with unit_of_work() as session:
        if session.scalar(select(Customer.id).where(Customer.user_id == demo.user_id)) is not None:
            return False
        session.add(
            Customer(
                user_id=demo.user_id,
                email=demo.email,
                provider_customer_id=demo.provider_customer_id,
                created_at=now,
                updated_at=now,
            )
        )
        subscription = Subscription(
            user_id=demo.user_id,
            plan=demo.plan,
            status=demo.status,
            credits=demo.credits,
            valid_until=now + demo.valid_for,
            provider_subscription_id=demo.provider_subscription_id,
            created_at=now,
            updated_at=now,
        )
        session.add(subscription)
        session.flush()
        audit.record(
            session, actor, "subscription.update", demo.user_id, None, view(subscription), now=now, reason="demo data"
        )
        if demo.grace:
            starts, ends, status = demo.grace
            grace = GracePeriod(
                user_id=demo.user_id,
                starts_at=now + starts,
                ends_at=now + ends,
                status=status,
                reason="demo data: card declined",
                created_at=now,
                updated_at=now,
            )
            session.add(grace)
            session.flush()
            audit.record(
                session, actor, "grace.start", demo.user_id, None, GraceView.of(grace), now=now, reason="demo data"
            )
    return True


# -- webhook events -------------------------------------------------------------------------------------------
# Signed with a demo secret and run through the receiver, so they take the path real deliveries take. The secret
# only signs these in-process deliveries; it is never an accepted WEBHOOK_SECRET.
DEMO_WEBHOOK_SECRET = "whsec_billops_demo_events_only"
PRICES = {"pro": "price_1PgagAB7WZ01zgkWpro00001", "team": "price_1PgahCB7WZ01zgkWteam0001"}


def _subscription(user: str, status: str, price: str, period_end: datetime) -> dict:
    demo = next(d for d in DEMO_CUSTOMERS if d.user_id == user)
    item = {
        "id": f"si_{demo.provider_subscription_id[4:]}",
        "object": "subscription_item",
        "price": {"id": price, "object": "price", "currency": "usd", "type": "recurring"},
        "current_period_end": int(period_end.timestamp()),  # API 2025-03-31+: the period sits on the items
        "quantity": 1,
    }
    return {
        "id": demo.provider_subscription_id,
        "object": "subscription",
        "customer": demo.provider_customer_id,
        "status": status,
        "metadata": {"user_id": user},
        "items": {"object": "list", "data": [item], "has_more": False},
    }


def _invoice(invoice_id: str, customer: str, status: str) -> dict:
    """A subscription invoice (API 2025-03-31+: it names its subscription under `parent`)."""
    demo = next((d for d in DEMO_CUSTOMERS if d.provider_customer_id == customer), None)
    subscription = demo.provider_subscription_id if demo else f"sub_{customer.removeprefix('cus_')}"
    parent = {"type": "subscription_details", "subscription_details": {"subscription": subscription}}
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": customer,
        "status": status,
        "currency": "usd",
        "parent": parent,
    }


def _demo_events(now: datetime) -> list[tuple[str, str, dict, timedelta]]:
    """(event id, type, object, created relative to now), in delivery order."""
    hour, day = timedelta(hours=1), DAY
    return [
        ("evt_demo_alice_sub", "customer.subscription.updated",
         _subscription("user-alice", "active", PRICES["pro"], now + 21 * day), -2 * hour),
        # Delivered late: older than the one above, so it is ignored as stale.
        ("evt_demo_alice_late", "customer.subscription.updated",
         _subscription("user-alice", "past_due", PRICES["pro"], now + 21 * day), -3 * hour),
        ("evt_demo_alice_paid", "invoice.paid", _invoice("in_demoAlice0001", "cus_QXgAlice00001", "paid"), -hour),
        ("evt_demo_bob_failed", "invoice.payment_failed",
         _invoice("in_demoBob000001", "cus_QXgBob0000001", "open"), -2 * day),
        ("evt_demo_carol_sub", "customer.subscription.updated",
         _subscription("user-carol", "trialing", PRICES["team"], now + 10 * day), -3 * hour),
        ("evt_demo_customer", "customer.updated", {"id": "cus_QXgFrank00001", "object": "customer"}, -4 * hour),
        # Failed: customers billops has not seen yet, and a price missing from the catalog.
        ("evt_demo_grace_paid", "invoice.paid",
         _invoice("in_demoGrace001", "cus_QXgGrace000001", "paid"), -30 * MINUTE),
        ("evt_demo_henry_failed", "invoice.payment_failed",
         _invoice("in_demoHenry001", "cus_QXgHenry000001", "open"), -20 * MINUTE),
        ("evt_demo_ivy_sub", "customer.subscription.created",
         {**_subscription("user-alice", "active", "price_1PgzzzB7WZ01zgkWunknown1", now + 30 * day),
          "id": "sub_1PgbIvy000000001", "customer": "cus_QXgIvy0000001", "metadata": {"user_id": "user-ivy"}},
         -10 * MINUTE),
    ]  # fmt: skip


def _deliver_events(*, grace_days: int, now: datetime) -> list[str]:
    created = _deliver_dead_event(grace_days=grace_days, now=now)
    for event_id, event_type, obj, offset in _demo_events(now):
        if _deliver(event_id, event_type, obj, created=now + offset, grace_days=grace_days, now=now):
            created.append(event_id)
    return created


def _deliver_dead_event(*, grace_days: int, now: datetime) -> list[str]:
    """An invoice for a customer that never appeared, received four days ago and retried until it died."""
    received = now - timedelta(days=4)
    invoice = _invoice("in_demoGone0001", "cus_QXgGone000001", "paid")
    if not _deliver(
        "evt_demo_gone_paid", "invoice.paid", invoice, created=received, grace_days=grace_days, now=received
    ):
        return []
    at = received
    for delay in webhooks.RETRY_DELAYS:
        at += delay
        webhooks.drain_due(grace_days=grace_days, now=at)
    return ["evt_demo_gone_paid"]


def _deliver(event_id: str, event_type: str, obj: dict, *, created: datetime, grace_days: int, now: datetime) -> bool:
    """Sign and receive one event; False if it was stored already."""
    body = {"id": event_id, "object": "event", "api_version": "2025-03-31.basil", "created": int(created.timestamp()),
            "type": event_type, "livemode": False, "data": {"object": obj}}  # fmt: skip
    raw = json.dumps(body).encode()
    header = webhooks.signature_header(raw, DEMO_WEBHOOK_SECRET, timestamp=int(now.timestamp()))
    receipt = webhooks.receive(raw, header, secrets=[DEMO_WEBHOOK_SECRET], grace_days=grace_days, now=now)
    return not receipt.duplicate
