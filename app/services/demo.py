"""Demo data: the shipped plans and a handful of customers in every state (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from app.models.customers import Customer
from app.models.grace import GracePeriod, GraceStatus
from app.models.plans import Plan
from app.models.subscriptions import Subscription, SubscriptionStatus
from app.services import audit
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


def load_demo_data(catalog_path: Path, *, actor: Actor, now: datetime) -> DemoReport:
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
