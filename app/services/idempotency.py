"""Idempotency-Key: a retried admin POST gets the first answer again instead of running twice.

State lives in the database, so every gunicorn worker sees it. A key is claimed (committed `in_flight`) before
the request's work starts, and the answer is stored once it is known. Keys are scoped per admin key.

Between the two, every commit of the request's session also stamps the key `applied_at`, in the same transaction
(`_stamp_applied`): if the process dies after its change committed but before its answer was stored, a retry
is refused instead of running the change a second time.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, event, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.extensions import db
from app.models.idempotency import IdempotencyKey, IdempotencyState
from app.services.errors import IdempotencyInProgress, IdempotencyKeyReused
from app.services.uow import unit_of_work

KEY_LIFETIME = timedelta(hours=24)
# A claim older than this whose answer never came belongs to a process that died (gunicorn kills a request after
# 30 s): a retry may take the key over and run the request.
IN_FLIGHT_TIMEOUT = timedelta(minutes=5)
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces (fullmatch: "$" lets "\n" in)
# Answers that mean "try again" are not kept: the retry with the same key runs the request anew.
_RETRYABLE_STATUSES = (409, 429)
_RUNNING = "idempotency.running"  # session.info: (admin key id, key, now) of the claimed key whose request runs


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: dict[str, Any]


def is_valid_key(key: str) -> bool:
    return KEY_PATTERN.fullmatch(key) is not None


def fingerprint(method: str, path: str, body: Any) -> str:
    """SHA-256 of the method, path and canonical JSON body: the same request, however its JSON is spaced."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method}\n{path}\n{canonical}".encode()).hexdigest()


def claim(admin_key_id: int, key: str, request_fingerprint: str, *, now: datetime) -> StoredResponse | None:
    """Claim `key` for this request (None: go ahead), or the first request's stored answer.

    IdempotencyKeyReused if the key came with another request; IdempotencyInProgress while the first one runs.
    """
    try:
        with unit_of_work() as session:
            row = session.scalar(
                select(IdempotencyKey)
                .where(IdempotencyKey.admin_key_id == admin_key_id, IdempotencyKey.key == key)
                .with_for_update()
            )
            if row is None:
                row = IdempotencyKey(admin_key_id=admin_key_id, key=key)
                session.add(row)
            elif row.expires_at > now and (stored := _answer_for(row, request_fingerprint, now)) is not None:
                return stored
            _start(row, request_fingerprint, now)  # new, past its lifetime, or abandoned before its change
    except IntegrityError:  # another process claimed the same key at the same moment
        raise _in_progress() from None
    db.session.info[_RUNNING] = (admin_key_id, key, now)  # after the claim's own commit
    return None


def finish(admin_key_id: int, key: str, status: int, body: Any, *, now: datetime) -> None:
    """Keep the answer to a claimed key; release the key instead if the answer should not be replayed, unless the
    request's change committed (then a retry must not run it again: the key stays claimed, and is refused)."""
    db.session.info.pop(_RUNNING, None)
    with unit_of_work() as session:
        row = session.scalar(
            select(IdempotencyKey)
            .where(IdempotencyKey.admin_key_id == admin_key_id, IdempotencyKey.key == key)
            .with_for_update()
        )
        if row is None or row.state is not IdempotencyState.IN_FLIGHT:
            return
        if status >= 500 or status in _RETRYABLE_STATUSES or not isinstance(body, dict):
            if row.applied_at is None:
                session.delete(row)  # nothing was kept (or the answer says to retry): a retry runs anew
            return
        row.state, row.response_status, row.response_body = IdempotencyState.DONE, status, body


def purge_expired_idempotency_keys(now: datetime) -> int:
    """Delete keys past their 24 hours; the retry worker calls this. Returns how many went."""
    with unit_of_work() as session:
        result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now))
    return result.rowcount


def _start(row: IdempotencyKey, request_fingerprint: str, now: datetime) -> None:
    row.fingerprint, row.state, row.applied_at = request_fingerprint, IdempotencyState.IN_FLIGHT, None
    row.response_status, row.response_body = None, None
    row.created_at, row.expires_at = now, now + KEY_LIFETIME


def _answer_for(row: IdempotencyKey, request_fingerprint: str, now: datetime) -> StoredResponse | None:
    if row.fingerprint != request_fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was used with a different request (method, path or body) in the last 24 hours; "
            "use a new key for a new request."
        )
    if row.state is IdempotencyState.DONE:
        return StoredResponse(row.response_status, row.response_body)
    if now - row.created_at < IN_FLIGHT_TIMEOUT:
        raise _in_progress()
    if row.applied_at is not None:
        raise IdempotencyInProgress(
            f"The first request with this Idempotency-Key made its change at {row.applied_at.isoformat()}, but its "
            "answer was lost (its process stopped). It will not run again: read the record to see its state, and "
            "use a new key for a new change."
        )
    return None  # the first request's process died before its change: this one takes the key over


@event.listens_for(Session, "before_commit")
def _stamp_applied(session: Session) -> None:
    """While a claimed key's request runs, each commit of its session (its change) stamps the key, in the same
    transaction: committed together, or not at all. A savepoint's release is not a commit (a replay releases one
    per event): only the transaction's own commit stamps."""
    running = session.info.get(_RUNNING)
    if running is None or session.in_nested_transaction():
        return
    admin_key_id, key, now = running
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.admin_key_id == admin_key_id, IdempotencyKey.key == key)
        .where(IdempotencyKey.applied_at.is_(None))
        .values(applied_at=now)
    )


def _in_progress() -> IdempotencyInProgress:
    return IdempotencyInProgress(
        "A request with this Idempotency-Key is still running; retry in a moment to get its answer."
    )
