from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.base import now_default, str_enum


class Role(enum.StrEnum):
    VIEWER = "viewer"
    SUPPORT = "support"
    ADMIN = "admin"


class AdminKey(db.Model):
    """A named credential. Only its SHA-256 is stored; the key itself is shown once."""

    __tablename__ = "admin_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(str_enum(Role))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, comment="sha256 hex of the key")
    key_prefix: Mapped[str] = mapped_column(String(16), comment="first characters, to recognise a key")
    created_at: Mapped[datetime] = mapped_column(default=now_default)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class AdminSession(db.Model):
    """A console sign-in. The cookie holds a random id; only its SHA-256 is stored."""

    __tablename__ = "admin_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    admin_key_id: Mapped[int] = mapped_column(ForeignKey("admin_keys.id"), index=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]

    admin_key: Mapped[AdminKey] = relationship()


class AuthFailureCount(db.Model):
    """Failed authentications from one address (or `*`: audited ones from every address) in one minute.

    Incremented atomically (INSERT ... ON CONFLICT DO UPDATE ... RETURNING), so the audit quota is exact under
    concurrency without the audit chain's lock; a minute's rows are deleted once its summary is in the audit log.
    """

    __tablename__ = "auth_failure_counts"

    address: Mapped[str] = mapped_column(String(64), primary_key=True, comment="client IP, normalised; * for all")
    window_start: Mapped[datetime] = mapped_column(primary_key=True, comment="start of the minute counted")
    failures: Mapped[int] = mapped_column(comment="failed authentications seen (audited or not)")
    audited: Mapped[int] = mapped_column(comment="of those, how many have their own auth.failed row")
