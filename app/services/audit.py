"""The audit log: a hash chain written in the caller's transaction."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, select, text
from sqlalchemy.orm import Session

from app.extensions import db
from app.models.audit import AuditEntry
from app.services.actor import Actor
from app.services.pagination import Page, keyset_page
from app.services.permissions import Permission, require

GENESIS_HASH = "0" * 64
# Every action the log records (PRODUCT.md, "audit entry").
ACTIONS = (
    "entitlements.override",
    "grace.reset",
    "grace.start",
    "grace.resolve",
    "grace.expire",
    "subscription.update",
    "webhook.replay",
    "plans.sync",
    "reconcile.apply",
    "admin_key.create",
    "admin_key.revoke",
    "auth.failed",
    "console.login",
    "console.logout",
)
# Any constant: the PostgreSQL advisory lock that serialises writers of the chain.
_CHAIN_LOCK_ID = 0x62696C6C  # "bill"


def record(
    session: Session,
    actor: Actor,
    action: str,
    user_id: str | None,
    before: Any,
    after: Any,
    *,
    now: datetime,
    reason: str | None = None,
) -> AuditEntry:
    """Append an entry to the chain inside the caller's transaction (it commits or rolls back with the change)."""
    _lock_chain(session)
    prev_hash = session.scalar(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1))
    entry = AuditEntry(
        created_at=now.astimezone(UTC),
        actor=actor.name,
        action=action,
        user_id=user_id,
        reason=reason,
        before=to_json(before),
        after=to_json(after),
        context=actor.context(),
        prev_hash=prev_hash or GENESIS_HASH,
    )
    entry.hash = entry_hash(entry)
    session.add(entry)
    session.flush()
    return entry


def entry_hash(entry: AuditEntry) -> str:
    """SHA-256 over a canonical JSON of the entry's content and the previous hash."""
    content = {
        "created_at": entry.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": entry.actor,
        "action": entry.action,
        "user_id": entry.user_id,
        "reason": entry.reason,
        "before": entry.before,
        "after": entry.after,
        "context": entry.context,
        "prev_hash": entry.prev_hash,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def to_json(value: Any) -> Any:
    """`value` as plain JSON types, so what is stored is exactly what was hashed."""
    return None if value is None else json.loads(json.dumps(value, default=_encode))


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _lock_chain(session: Session) -> None:
    """Serialise chain writers so two transactions never link to the same previous row."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(text(f"pg_advisory_xact_lock({_CHAIN_LOCK_ID})")))
    else:
        # SQLite has one writer at a time: any write statement takes the database's write lock until commit.
        session.execute(text("UPDATE billing_admin_audit SET id = id WHERE 0 = 1"))


@dataclass(frozen=True)
class ChainReport:
    checked: int
    first_bad_id: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad_id is None


def verify_chain(batch_size: int = 1000) -> ChainReport:
    """Walk the chain oldest first; report the first row whose links or hash do not match."""
    prev_hash = GENESIS_HASH
    checked = 0
    stmt = select(AuditEntry).order_by(AuditEntry.id)
    rows = db.session.scalars(stmt.execution_options(yield_per=batch_size, populate_existing=True))
    for entry in rows:
        if entry.prev_hash != prev_hash:
            return ChainReport(
                checked, entry.id, "prev_hash does not match the previous row's hash (a row is missing or moved)"
            )
        if entry_hash(entry) != entry.hash:
            return ChainReport(checked, entry.id, "content does not match its hash (the row was edited)")
        prev_hash = entry.hash
        checked += 1
    return ChainReport(checked)


@dataclass(frozen=True)
class AuditFilter:
    user_id: str | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _filtered(filters: AuditFilter) -> Select:
    stmt = select(AuditEntry)
    for column, value in (
        (AuditEntry.user_id, filters.user_id),
        (AuditEntry.actor, filters.actor),
        (AuditEntry.action, filters.action),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if filters.since is not None:
        stmt = stmt.where(AuditEntry.created_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(AuditEntry.created_at < filters.until)
    return stmt


def list_entries(filters: AuditFilter, *, actor: Actor, after: tuple[int] | None, limit: int) -> Page[AuditEntry]:
    """Entries matching `filters`, newest first, one keyset page at a time."""
    require(actor, Permission.READ)
    return keyset_page(
        db.session, _filtered(filters), [AuditEntry.id], lambda entry: (entry.id,), after=after, limit=limit
    )


def iter_entries(filters: AuditFilter, *, actor: Actor, batch_size: int = 500) -> Iterator[AuditEntry]:
    """Every matching entry, newest first, streamed in batches (bounded memory for exports)."""
    require(actor, Permission.READ)
    stmt = _filtered(filters).order_by(AuditEntry.id.desc()).execution_options(yield_per=batch_size)
    yield from db.session.scalars(stmt)
