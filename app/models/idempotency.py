from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import str_enum


class IdempotencyState(enum.StrEnum):
    IN_FLIGHT = "in_flight"
    DONE = "done"


class IdempotencyKey(db.Model):
    """A client's `Idempotency-Key` on an admin POST, scoped to the admin key that sent it."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("admin_key_id", "key", name="uq_idempotency_keys_admin_key_id_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    admin_key_id: Mapped[int] = mapped_column(ForeignKey("admin_keys.id"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64), comment="sha256 of method, path and body")
    state: Mapped[IdempotencyState] = mapped_column(str_enum(IdempotencyState))
    applied_at: Mapped[datetime | None] = mapped_column(
        comment="when a transaction of the request committed; written in that transaction"
    )
    response_status: Mapped[int | None]
    response_body: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
