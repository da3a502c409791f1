from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import now_default


class Customer(db.Model):
    """Our user id <-> the provider's customer id."""

    __tablename__ = "billing_customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), unique=True)
    provider_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)  # cus_...
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    created_at: Mapped[datetime] = mapped_column(default=now_default)
    updated_at: Mapped[datetime] = mapped_column(default=now_default, onupdate=now_default)
    # Reconcile's evidence: per subscription field, the value the event applied last set, and which event
    # (app/services/evidence.py). Read by reconcile only, so not loaded with the customer unless asked for.
    evidence: Mapped[dict[str, Any] | None] = mapped_column(deferred=True)
