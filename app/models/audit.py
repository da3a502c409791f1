from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db

# Audited changes of a subscription made by a person or a tool rather than a webhook handler (whose event is the
# evidence): reconcile's manual steps, read through the partial index below. Literals, not parameters, so that
# PostgreSQL can match the query to the index in any plan.
MANUAL_SUBSCRIPTION_CHANGE = text(
    "action IN ('entitlements.override', 'subscription.update', 'reconcile.apply') AND actor NOT LIKE 'webhook:%'"
)


class AuditEntry(db.Model):
    """Append-only record of a change. Rows form an HMAC chain (app/services/audit.py); PostgreSQL refuses
    UPDATE/DELETE/TRUNCATE."""

    __tablename__ = "billing_admin_audit"
    __table_args__ = (
        Index("ix_billing_admin_audit_user_id_id", "user_id", "id"),
        Index("ix_billing_admin_audit_actor_id", "actor", "id"),
        Index("ix_billing_admin_audit_action_id", "action", "id"),
        Index("ix_billing_admin_audit_created_at", "created_at"),
        # Failed authentications in a period (the audit log filtered by action and time).
        Index("ix_billing_admin_audit_action_created_at", "action", "created_at"),
        Index(
            "ix_billing_admin_audit_manual_changes",
            "user_id",
            postgresql_where=MANUAL_SUBSCRIPTION_CHANGE,
            sqlite_where=MANUAL_SUBSCRIPTION_CHANGE,
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(db.Integer, "sqlite"), primary_key=True)
    created_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    context: Mapped[dict[str, Any]] = mapped_column(comment="request id, ip, user agent, channel")
    prev_hash: Mapped[str] = mapped_column(String(64), comment="hash of the previous row; zeros for the first")
    hash: Mapped[str] = mapped_column(String(64), unique=True, comment="HMAC-SHA256 of canonical under key_id")
    key_id: Mapped[str] = mapped_column(String(16), comment="which AUDIT_KEY signed the row: sha256(key)[:8]")
    canonical: Mapped[str] = mapped_column(
        Text, comment="the exact JSON text signed: id, content, prev_hash, key_id (ASCII)"
    )
