from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import now_default, str_enum


class GraceStatus(enum.StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    RESOLVED = "resolved"


class GracePeriod(db.Model):
    """Time a user keeps access after a failed payment. At most one is active per user."""

    __tablename__ = "billing_grace_periods"
    __table_args__ = (
        Index(
            "uq_billing_grace_periods_active_user",
            "user_id",
            unique=True,
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
        Index("ix_billing_grace_periods_status_ends_at", "status", "ends_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("billing_customers.user_id"), index=True)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    status: Mapped[GraceStatus] = mapped_column(str_enum(GraceStatus), default=GraceStatus.ACTIVE)
    reset_count: Mapped[int] = mapped_column(default=0, comment="times support extended it")
    reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=now_default)
    updated_at: Mapped[datetime] = mapped_column(default=now_default, onupdate=now_default)
