"""Reading a user's subscription with its grace period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.extensions import db
from app.models.customers import Customer
from app.models.grace import GracePeriod, GraceStatus
from app.models.subscriptions import Subscription, SubscriptionStatus
from app.services.actor import Actor
from app.services.errors import NotFound
from app.services.permissions import Permission, require


@dataclass(frozen=True)
class GraceView:
    starts_at: datetime
    ends_at: datetime
    status: GraceStatus
    reset_count: int
    reason: str | None

    @classmethod
    def of(cls, grace: GracePeriod) -> GraceView:
        return cls(grace.starts_at, grace.ends_at, grace.status, grace.reset_count, grace.reason)


@dataclass(frozen=True)
class SubscriptionView:
    user_id: str
    plan: str | None
    status: SubscriptionStatus
    credits: int
    valid_until: datetime | None
    provider_subscription_id: str | None
    version: int
    updated_at: datetime
    grace_period: GraceView | None


def get_subscription(user_id: str, *, actor: Actor) -> SubscriptionView:
    """The user's subscription and active grace period; NotFound for an unknown user or none."""
    require(actor, Permission.READ)
    subscription = db.session.scalar(select(Subscription).where(Subscription.user_id == user_id))
    if subscription is None:
        known = db.session.scalar(select(Customer.id).where(Customer.user_id == user_id)) is not None
        raise NotFound(
            f"User {user_id!r} has no subscription." if known else f"No customer has the user id {user_id!r}."
        )
    return view(subscription)


def lock_subscription(session: Session, user_id: str) -> Subscription | None:
    """The user's subscription, locked for this transaction (FOR UPDATE on PostgreSQL; the version column
    still refuses a lost update on SQLite). Every write to a user's subscription reads it through here."""
    return session.scalar(select(Subscription).where(Subscription.user_id == user_id).with_for_update())


def lock_customer(session: Session, user_id: str) -> Customer:
    """The customer `user_id`, locked for this transaction, or NotFound.

    Taken before `lock_subscription` by writes that may create the user's first subscription or grace period,
    so two of them cannot both find none and both insert. On SQLite a no-op write takes the database's write
    lock up front, so concurrent writers queue instead of failing their version check.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("UPDATE billing_customers SET id = id WHERE user_id = :user_id"), {"user_id": user_id})
    return _known(session.scalar(select(Customer).where(Customer.user_id == user_id).with_for_update()), user_id)


def require_customer(session: Session, user_id: str) -> Customer:
    """The customer `user_id`, read without a lock (for a preview, which writes nothing), or NotFound."""
    return _known(session.scalar(select(Customer).where(Customer.user_id == user_id)), user_id)


def _known(customer: Customer | None, user_id: str) -> Customer:
    if customer is None:
        raise NotFound(f"No customer has the user id {user_id!r}.")
    return customer


_LOOK_UP = object()  # view(): read the user's active grace period


def view(subscription: Subscription, grace_period: GraceView | object | None = _LOOK_UP) -> SubscriptionView:
    """The subscription as callers see it; `grace_period` when the caller knows it already (saves a query)."""
    return SubscriptionView(
        user_id=subscription.user_id,
        plan=subscription.plan,
        status=subscription.status,
        credits=subscription.credits,
        valid_until=subscription.valid_until,
        provider_subscription_id=subscription.provider_subscription_id,
        version=subscription.version,
        updated_at=subscription.updated_at,
        grace_period=active_grace(subscription.user_id) if grace_period is _LOOK_UP else grace_period,
    )


def active_grace(user_id: str) -> GraceView | None:
    grace = db.session.scalar(
        select(GracePeriod).where(GracePeriod.user_id == user_id, GracePeriod.status == GraceStatus.ACTIVE)
    )
    return GraceView.of(grace) if grace else None
