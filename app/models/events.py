from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import now_default, str_enum


class EventStatus(enum.StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    FAILED = "failed"
    IGNORED = "ignored"
    DEAD = "dead"


class AttemptTrigger(enum.StrEnum):
    RECEIVE = "receive"
    RETRY = "retry"
    REPLAY = "replay"


class BillingEvent(db.Model):
    """One webhook delivery from the provider, stored before it is processed."""

    __tablename__ = "billing_events"
    __table_args__ = (
        # Newest-first keyset pages, unfiltered and by the filters the console and API offer.
        Index("ix_billing_events_created_at_id", "created_at", "id"),
        Index("ix_billing_events_status_created_at", "status", "created_at", "id"),
        Index("ix_billing_events_user_id_created_at", "user_id", "created_at", "id"),
        Index("ix_billing_events_type_created_at", "type", "created_at", "id"),
        # The workers' claim (migration 0004): claimable events in the order they are due, and only those.
        Index(
            "ix_billing_events_due",
            "next_retry_at",
            "id",
            postgresql_where=text("status IN ('received', 'failed')"),
            sqlite_where=text("status IN ('received', 'failed')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(db.Integer, "sqlite"), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True, comment="provider event id (evt_...)")
    type: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    status: Mapped[EventStatus] = mapped_column(str_enum(EventStatus), default=EventStatus.RECEIVED)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_retry_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(comment="provider time (the event's `created`)")
    received_at: Mapped[datetime] = mapped_column(default=now_default)
    processed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=now_default, onupdate=now_default)

    attempt_history: Mapped[list[EventAttempt]] = relationship(
        back_populates="event", order_by="EventAttempt.id", cascade="all, delete-orphan", passive_deletes=True
    )


class EventAttempt(db.Model):
    """One run of an event's handler: when, why, and how it ended."""

    __tablename__ = "billing_event_attempts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(db.Integer, "sqlite"), primary_key=True)
    event_pk: Mapped[int] = mapped_column(ForeignKey("billing_events.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    trigger: Mapped[AttemptTrigger] = mapped_column(str_enum(AttemptTrigger))
    outcome: Mapped[EventStatus] = mapped_column(str_enum(EventStatus))
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(default=0)

    event: Mapped[BillingEvent] = relationship(back_populates="attempt_history")
