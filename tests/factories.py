"""factory_boy factories for the models, saved through the test's session."""

from __future__ import annotations

import itertools
from datetime import timedelta

import factory
from sqlalchemy import select

from app import clock
from app.extensions import db
from app.models import (
    BillingEvent,
    Customer,
    EventStatus,
    GracePeriod,
    GraceStatus,
    Plan,
    PlanInterval,
    Subscription,
    SubscriptionStatus,
)

_counter = itertools.count(1)


def unique_suffix() -> str:
    return f"{next(_counter):05d}"


class _Factory(factory.alchemy.SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = lambda: db.session  # noqa: E731
        sqlalchemy_session_persistence = "commit"


class PlanFactory(_Factory):
    class Meta:
        model = Plan

    code = factory.Sequence(lambda n: f"plan-{n}")
    provider_price_id = factory.Sequence(lambda n: f"price_test{n:06d}")
    name = factory.LazyAttribute(lambda plan: plan.code.title())
    amount = 2000
    currency = "usd"
    interval = PlanInterval.MONTH
    credits_per_period = 1000
    active = True


class CustomerFactory(_Factory):
    class Meta:
        model = Customer

    user_id = factory.Sequence(lambda n: f"user-{n:05d}")
    provider_customer_id = factory.Sequence(lambda n: f"cus_test{n:06d}")
    email = factory.LazyAttribute(lambda customer: f"{customer.user_id}@example.com")


class _BelongsToCustomer(_Factory):
    """Creates the customer a `user_id` names when it does not exist yet."""

    class Meta:
        abstract = True

    user_id = factory.Sequence(lambda n: f"user-{n:05d}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        if db.session.scalar(select(Customer.id).where(Customer.user_id == kwargs["user_id"])) is None:
            CustomerFactory(user_id=kwargs["user_id"])
        return super()._create(model_class, *args, **kwargs)


class SubscriptionFactory(_BelongsToCustomer):
    class Meta:
        model = Subscription

    plan = "pro"
    status = SubscriptionStatus.ACTIVE
    credits = 1000
    valid_until = factory.LazyFunction(lambda: clock.utcnow() + timedelta(days=30))
    provider_subscription_id = factory.Sequence(lambda n: f"sub_test{n:06d}")


class GracePeriodFactory(_BelongsToCustomer):
    class Meta:
        model = GracePeriod

    # Not LazyFunction(clock.utcnow): that would keep the real clock when a test freezes `clock.utcnow`.
    starts_at = factory.LazyFunction(lambda: clock.utcnow())
    ends_at = factory.LazyFunction(lambda: clock.utcnow() + timedelta(days=7))
    status = GraceStatus.ACTIVE
    reason = "card declined"


class BillingEventFactory(_Factory):
    class Meta:
        model = BillingEvent

    event_id = factory.Sequence(lambda n: f"evt_test{n:08d}")
    type = "invoice.payment_failed"
    user_id = None
    payload = factory.LazyAttribute(lambda event: {"id": event.event_id, "type": event.type, "data": {"object": {}}})
    status = EventStatus.PROCESSED
    created_at = factory.LazyFunction(lambda: clock.utcnow())
    received_at = factory.LazyFunction(lambda: clock.utcnow())
