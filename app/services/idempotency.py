"""Idempotency-Key: a retried admin POST gets the first answer again instead of running twice.

State lives in the database, so every gunicorn worker sees it. A key is claimed (committed `in_flight`) before
the request's work starts, and the answer is stored once it is known. Keys are scoped per admin key.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

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
            elif row.expires_at > now:
                return _answer_for(row, request_fingerprint, now)
            _start(row, request_fingerprint, now)  # a new key, or one past its lifetime: a fresh claim
            return None
    except IntegrityError:  # another process claimed the same key at the same moment
        raise _in_progress() from None


def finish(admin_key_id: int, key: str, status: int, body: Any, *, now: datetime) -> None:
    """Keep the answer to a claimed key; release the key instead if the answer should not be replayed."""
    with unit_of_work() as session:
        row = session.scalar(
            select(IdempotencyKey)
            .where(IdempotencyKey.admin_key_id == admin_key_id, IdempotencyKey.key == key)
            .with_for_update()
        )
        if row is None or row.state is not IdempotencyState.IN_FLIGHT:
            return
        if status >= 500 or status in _RETRYABLE_STATUSES or not isinstance(body, dict):
            session.delete(row)  # nothing was kept (or the answer says to retry): a retry runs anew
            return
        row.state, row.response_status, row.response_body = IdempotencyState.DONE, status, body


def purge_expired_idempotency_keys(now: datetime) -> int:
    """Delete keys past their 24 hours; the retry worker calls this. Returns how many went."""
    with unit_of_work() as session:
        result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now))
    return result.rowcount


def _start(row: IdempotencyKey, request_fingerprint: str, now: datetime) -> None:
    row.fingerprint, row.state = request_fingerprint, IdempotencyState.IN_FLIGHT
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
    row.created_at = now  # the first request's process died before answering: this one takes the key over
    return None


def _in_progress() -> IdempotencyInProgress:
    return IdempotencyInProgress(
        "A request with this Idempotency-Key is still running; retry in a moment to get its answer."
    )
