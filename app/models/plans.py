from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import now_default, str_enum


class PlanInterval(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


class Plan(db.Model):
    """One entry of the plan catalog."""

    __tablename__ = "billing_plans"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("credits_per_period >= 0", name="credits_per_period_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    provider_price_id: Mapped[str | None] = mapped_column(String(255), unique=True)  # price_...
    name: Mapped[str] = mapped_column(String(200))
    amount: Mapped[int] = mapped_column(comment="price in minor units of currency (cents)")
    currency: Mapped[str] = mapped_column(String(3), comment="ISO 4217, lower case")
    interval: Mapped[PlanInterval] = mapped_column(str_enum(PlanInterval))
    credits_per_period: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=now_default)
    updated_at: Mapped[datetime] = mapped_column(default=now_default, onupdate=now_default)


class CatalogState(db.Model):
    """One row: whether the provider's catalog changed since the last plans sync (price/product/plan webhooks)."""

    __tablename__ = "billing_catalog_state"

    id: Mapped[int] = mapped_column(primary_key=True, comment="always 1: there is one catalog")
    stale_since: Mapped[datetime | None] = mapped_column(comment="first catalog event since the last sync")
    stale_reason: Mapped[str | None] = mapped_column(String(300), comment="e.g. 'price.updated evt_...'")
    synced_at: Mapped[datetime | None]
