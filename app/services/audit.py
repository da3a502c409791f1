"""The audit log: an HMAC chain written in the caller's transaction.

Each row is signed with HMAC-SHA256 under the first AUDIT_KEY (a secret the database does not hold). What is
signed is the row's id, its content, the previous row's MAC and the key's id, as canonical JSON stored verbatim in
`canonical`, so it reads back byte for byte whatever the database does to JSON. Without the key nobody can edit,
forge, renumber or reorder a row unnoticed; a signed checkpoint kept elsewhere also shows rows cut from the end.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import Select, Text, cast, event, func, select, text
from sqlalchemy.orm import Session, SessionTransaction, scoped_session

from app.extensions import db
from app.models.audit import AuditEntry
from app.services.actor import Actor
from app.services.pagination import Page, keyset_page, where_matching
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
# session.info key of an open `batched` block: its queued entries, each with the savepoint it was recorded in.
_QUEUE = "audit.batched"
# Signed before a checkpoint's JSON, so a checkpoint's signature can never pass for a row's MAC or the reverse.
_CHECKPOINT_LABEL = b"billops audit checkpoint v1\n"
# Text neither database can store in a JSON or text column: NUL, and lone surrogates (not valid UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def because(reason: str | None, detail: str) -> str:
    """An audit reason: the person's `reason` (if they gave one), then what the system adds (`detail`)."""
    return f"{reason} — {detail}" if reason else detail


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
    """Append an entry to the chain inside the caller's transaction (it commits or rolls back with the change).

    Inside a `batched` block the entry is linked and written when the block ends (its `id` is set then).
    """
    entry = AuditEntry(
        created_at=now.astimezone(UTC),
        actor=to_json(actor.name),
        action=to_json(action),
        user_id=to_json(user_id),
        reason=to_json(reason),
        before=to_json(before),
        after=to_json(after),
        context=to_json(actor.context()),
    )
    queue = session.info.get(_QUEUE)
    if queue is None:
        _append(session, [entry])
    else:
        queue.append((_savepoint(session), entry))
    return entry


@contextmanager
def batched(session: Session) -> Iterator[None]:
    """Queue the entries `record` makes inside the block, and link and write them all when it ends: one chain
    lock, one read of the head and one INSERT for the lot, the lock taken last (after every row lock the block
    took) and held only until the caller commits. An entry recorded inside a savepoint that rolls back is
    dropped with it. For callers that do many audited changes in one transaction (webhook batches)."""
    session.info[_QUEUE] = queue = []
    try:
        yield
        _append(session, [entry for _savepoint, entry in queue])
    finally:
        del session.info[_QUEUE]


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    """Forget the queued entries of a `batched` block that `previous_transaction` (or a savepoint in it) made."""
    queue = session.info.get(_QUEUE)
    if queue:
        queue[:] = [(savepoint, entry) for savepoint, entry in queue if not _within(savepoint, previous_transaction)]


def _savepoint(session: Session | scoped_session) -> SessionTransaction | None:
    """The innermost savepoint open in `session` (the app passes `db.session`, a scoped_session)."""
    return (session() if isinstance(session, scoped_session) else session).get_nested_transaction()


def _within(savepoint: SessionTransaction | None, transaction: SessionTransaction) -> bool:
    """Whether an entry recorded in `savepoint` (None: outside any) is undone by `transaction` rolling back."""
    if not transaction.nested:
        return True  # the whole transaction rolled back
    while savepoint is not None and savepoint is not transaction:
        savepoint = savepoint.parent
    return savepoint is not None


def _append(session: Session, entries: list[AuditEntry]) -> None:
    if not entries:
        return
    _link(session, entries)
    session.add_all(entries)
    session.flush()
    # A row never changes once written: detached, it keeps its values through the caller's commit instead of
    # being expired and read back (a SELECT per audited request for the `audit_id` callers return).
    for entry in entries:
        session.expunge(entry)


def seal_batch(session: Session, drafts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Link and sign many new rows at once, for bulk loaders that insert them in the caller's transaction.

    Each draft holds `created_at` and the JSON-ready content (`actor`, `action`, `user_id`, `reason`, `before`,
    `after`, `context`). The chain lock is taken as `record` takes it and held until the caller commits, so the
    rows returned (every column, ids and links set) extend the head the chain has now.
    """
    rows = [SimpleNamespace(**draft) for draft in drafts]
    _link(session, rows)
    return [vars(row) for row in rows]


def _link(session: Session, rows: list[Any]) -> None:
    """Under the chain lock, give each row (content set) the next id and the previous row's hash, and sign it."""
    _lock_chain(session)
    head = session.execute(select(AuditEntry.id, AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)).first()
    # Ids are chosen here, under the lock, because the MAC covers them.
    next_id, prev_hash = (head.id + 1, head.hash) if head else (1, GENESIS_HASH)
    ring = keyring()
    for offset, row in enumerate(rows):
        row.id, row.prev_hash = next_id + offset, prev_hash
        seal(row, ring)
        prev_hash = row.hash


@dataclass(frozen=True)
class Keyring:
    """The audit keys by key id; the first of AUDIT_KEY signs, every one verifies."""

    keys: dict[str, bytes]
    signing_id: str

    @classmethod
    def of(cls, secrets: list[str]) -> Keyring:
        return cls({key_id(secret): secret.encode() for secret in secrets}, key_id(secrets[0]))

    def sign(self, message: bytes, with_key: str | None = None) -> str:
        return hmac.new(self.keys[with_key or self.signing_id], message, hashlib.sha256).hexdigest()

    def verifies(self, with_key: str, message: bytes, mac: str) -> bool:
        return with_key in self.keys and hmac.compare_digest(self.sign(message, with_key), mac)


def key_id(secret: str) -> str:
    """A key's public name: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def keyring() -> Keyring:
    return Keyring.of(current_app.config["AUDIT_KEYS"])


def seal(entry: Any, ring: Keyring) -> None:
    """Sign `entry` (id, content and prev_hash set) with the signing key: sets key_id, canonical and hash.

    Migration 0002 seals the rows written before it with this too: changing what is signed breaks every row.
    """
    entry.key_id = ring.signing_id
    entry.canonical = canonical_json(signed_content(entry))
    entry.hash = ring.sign(entry.canonical.encode())


def signed_content(entry: Any) -> dict[str, Any]:
    """What a row's MAC covers, as the row's columns say it."""
    return {
        "id": entry.id,
        "created_at": entry.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": entry.actor,
        "action": entry.action,
        "user_id": entry.user_id,
        "reason": entry.reason,
        "before": entry.before,
        "after": entry.after,
        "context": entry.context,
        "prev_hash": entry.prev_hash,
        "key_id": entry.key_id,
    }


def canonical_json(value: Any) -> str:
    """One spelling of `value`: sorted keys, no spaces, ASCII only (storable and comparable byte for byte)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def to_json(value: Any) -> Any:
    """`value` as plain JSON types, with text either database would refuse replaced by U+FFFD."""
    if value is None:
        return None
    if type(value) is str:  # what the round trip below makes of it, without the round trip
        return _UNSTORABLE.sub("\ufffd", value)
    return _storable(json.loads(json.dumps(value, default=_encode, allow_nan=False)))


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_storable(item) for item in value]
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    return value


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
class Checkpoint:
    """The head of the chain at one moment, signed: kept outside the database, it shows rows cut from the end."""

    last_id: int | None
    head_hash: str
    count: int
    created_at: str
    key_id: str
    signature: str = ""

    def message(self) -> bytes:
        unsigned = {name: value for name, value in dataclasses.asdict(self).items() if name != "signature"}
        return _CHECKPOINT_LABEL + canonical_json(unsigned).encode()

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> Checkpoint:
        """Parse what `to_json` wrote; ValueError saying why for anything else."""
        try:
            checkpoint = cls(**json.loads(raw))
        except (ValueError, TypeError, RecursionError) as exc:
            raise ValueError(f"not an audit checkpoint ({exc})") from None
        if not (
            _is_int(checkpoint.count)
            and (checkpoint.last_id is None or _is_int(checkpoint.last_id))
            and all(isinstance(field, str) for field in (checkpoint.head_hash, checkpoint.created_at))
            and all(isinstance(field, str) for field in (checkpoint.key_id, checkpoint.signature))
        ):
            raise ValueError("not an audit checkpoint (a field has the wrong type)")
        return checkpoint


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ChainReport:
    """The outcome of a walk: how many rows held, the last of them, and the first problem if any."""

    checked: int
    head_id: int | None = None
    head_hash: str = GENESIS_HASH
    first_bad_id: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def checkpoint(report: ChainReport, *, now: datetime) -> Checkpoint:
    """A signed checkpoint of the head `report` verified."""
    ring = keyring()
    unsigned = Checkpoint(
        report.head_id, report.head_hash, report.checked, now.astimezone(UTC).isoformat(), ring.signing_id
    )
    return dataclasses.replace(unsigned, signature=ring.sign(unsigned.message()))


def verify_chain(expected: Checkpoint | None = None, *, batch_size: int = 1000) -> ChainReport:
    """Walk the chain oldest first; report the first row whose link, MAC or columns do not hold.

    With a checkpoint, also check its signature and that its head is still the chain's `count`-th row.
    """
    ring = keyring()
    if expected is not None and not ring.verifies(expected.key_id, expected.message(), expected.signature):
        return ChainReport(0, problem="the checkpoint's signature does not match under any AUDIT_KEY")
    report = ChainReport(0)
    stmt = select(AuditEntry).order_by(AuditEntry.id)
    for entry in db.session.scalars(stmt.execution_options(yield_per=batch_size, populate_existing=True)):
        position = report.checked + 1
        problem = _row_problem(entry, report.head_hash, ring) or _checkpoint_problem(entry, position, expected)
        if problem:
            return dataclasses.replace(report, first_bad_id=entry.id, problem=problem)
        report = ChainReport(report.checked + 1, entry.id, entry.hash)
    if expected is not None and expected.count > report.checked:
        return dataclasses.replace(
            report,
            first_bad_id=expected.last_id,
            problem=f"the checkpoint's head row {expected.last_id} is gone: the chain ends after "
            f"{report.checked} of the checkpoint's {expected.count} rows (rows were removed from its end)",
        )
    return report


def _row_problem(entry: AuditEntry, prev_hash: str, ring: Keyring) -> str | None:
    if entry.prev_hash != prev_hash:
        return "prev_hash does not match the previous row's hash (a row is missing or moved)"
    if entry.key_id not in ring.keys:
        return f"it names key {entry.key_id!r}, which is not in AUDIT_KEY (a forged row, or a key dropped too early)"
    if not ring.verifies(entry.key_id, entry.canonical.encode(), entry.hash):
        return "its MAC does not match (the row was edited or forged)"
    signed, stored = json.loads(entry.canonical), signed_content(entry)
    changed = [name for name in signed if not _same(signed[name], stored.get(name))]
    if changed:
        return f"the row was edited: {', '.join(changed)} no longer as signed"
    return None


def _checkpoint_problem(entry: AuditEntry, position: int, expected: Checkpoint | None) -> str | None:
    if expected is None or position != expected.count:
        return None
    if (entry.id, entry.hash) != (expected.last_id, expected.head_hash):
        return (
            f"row {entry.id} is now row number {expected.count} of the chain, where the checkpoint has row "
            f"{expected.last_id} with hash {expected.head_hash[:12]}... (rows were removed or replaced)"
        )
    return None


def _same(signed: Any, stored: Any) -> bool:
    """Whether a column read back holds the JSON value that was signed.

    Exact, except that a float may come back from PostgreSQL's JSONB respelled (1e16 as 10000000000000000).
    """
    if isinstance(signed, dict):
        return (
            isinstance(stored, dict)
            and signed.keys() == stored.keys()
            and all(_same(signed[key], stored[key]) for key in signed)
        )
    if isinstance(signed, list):
        return isinstance(stored, list) and len(signed) == len(stored) and all(map(_same, signed, stored))
    if isinstance(signed, float) and isinstance(stored, int | float) and not isinstance(stored, bool):
        try:
            return float(stored) == signed
        except OverflowError:
            return False
    return type(signed) is type(stored) and signed == stored


@dataclass(frozen=True)
class AuditFilter:
    user_id: str | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _filtered(filters: AuditFilter) -> Select:
    return where_matching(
        select(AuditEntry),
        [(AuditEntry.user_id, filters.user_id), (AuditEntry.actor, filters.actor), (AuditEntry.action, filters.action)],
        AuditEntry.created_at,
        filters.since,
        filters.until,
    )


def list_entries(filters: AuditFilter, *, actor: Actor, after: tuple[int] | None, limit: int) -> Page[AuditEntry]:
    """Entries matching `filters`, newest first, one keyset page at a time."""
    require(actor, Permission.READ)
    return keyset_page(
        db.session, _filtered(filters), [AuditEntry.id], lambda entry: (entry.id,), after=after, limit=limit
    )


class Exported(NamedTuple):
    """An audit entry as exports read it (no signature columns)."""

    id: int
    created_at: datetime
    actor: str
    action: str
    user_id: str | None
    reason: str | None
    before: Any
    after: Any
    context: Any


def iter_entries(filters: AuditFilter, *, actor: Actor, batch_size: int = 2000) -> Iterator[Exported]:
    """Every matching entry, newest first, for exports.

    The permission check and the first batch run now, so an export that cannot start fails before its first
    byte. Later batches are keyset queries of their own (no cursor or session held open while the client reads:
    a streamed response outlives the request's session). Rows are plain tuples, not loaded entries (nothing in the
    session, no signature text read), so memory stays bounded and a row costs little.
    """
    require(actor, Permission.READ)
    return _batches(filters, _batch(filters, None, batch_size), batch_size)


def _batch(filters: AuditFilter, before_id: int | None, size: int) -> list[Exported]:
    """The next batch; before, after and context come as one JSON array, parsed once per row instead of three times
    (JSON parsing was half of an export's CPU)."""
    documents = _json_array(AuditEntry.before, AuditEntry.after, AuditEntry.context)
    stmt = _filtered(filters).with_only_columns(
        *(getattr(AuditEntry, name) for name in Exported._fields[:6]), documents
    )
    if before_id is not None:
        stmt = stmt.where(AuditEntry.id < before_id)
    rows = db.session.execute(stmt.order_by(AuditEntry.id.desc()).limit(size))
    return [Exported(*row[:6], *json.loads(row[6])) for row in rows]


def _json_array(*columns):
    """The JSON text of an array of `columns` (JSON columns; SQL NULL as null)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return cast(func.json_build_array(*columns), Text)
    return func.json_array(*(func.json(column) for column in columns))


def _batches(filters: AuditFilter, batch: list[Exported], size: int) -> Iterator[Exported]:
    while batch:
        yield from batch
        if len(batch) < size:
            return
        batch = _batch(filters, batch[-1].id, size)
