from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import now_default, str_enum


class SubscriptionStatus(enum.StrEnum):
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    CANCELED = "canceled"


class Subscription(db.Model):
    """A user's one subscription: plan, status and credit balance."""

    __tablename__ = "billing_subscriptions"
    __table_args__ = (CheckConstraint("credits >= 0", name="credits_not_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("billing_customers.user_id"), unique=True)
    plan: Mapped[str | None] = mapped_column(String(64), comment="plan code (billing_plans.code)")
    status: Mapped[SubscriptionStatus] = mapped_column(str_enum(SubscriptionStatus))
    credits: Mapped[int] = mapped_column(default=0)
    valid_until: Mapped[datetime | None]
    provider_subscription_id: Mapped[str | None] = mapped_column(String(255), unique=True)  # sub_...
    version: Mapped[int] = mapped_column(comment="optimistic lock, bumped by every update")
    last_event_created_at: Mapped[datetime | None] = mapped_column(
        comment="provider `created` of the newest event applied; older events are stale"
    )
    created_at: Mapped[datetime] = mapped_column(default=now_default)
    updated_at: Mapped[datetime] = mapped_column(default=now_default, onupdate=now_default)

    __mapper_args__ = {"version_id_col": version}
