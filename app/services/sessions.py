"""Console sessions: the cookie carries a random id; the database decides whether it is still good."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from app.models.keys import AdminKey, AdminSession
from app.services import audit
from app.services.actor import Actor
from app.services.keys import hash_secret, is_replaced_bootstrap
from app.services.uow import unit_of_work

IDLE_TIMEOUT = timedelta(minutes=30)
ABSOLUTE_TIMEOUT = timedelta(hours=12)


@dataclass(frozen=True)
class StartedSession:
    session_id: str  # for the cookie; only its hash is stored
    audit_id: int


def start_session(key: AdminKey, *, actor: Actor, now: datetime) -> StartedSession:
    """Open a session for `key` (already authenticated) under a new random id."""
    session_id = secrets.token_urlsafe(32)
    with unit_of_work() as session:
        session.add(
            AdminSession(session_hash=hash_secret(session_id), admin_key_id=key.id, created_at=now, last_seen_at=now)
        )
        entry = audit.record(session, actor, "console.login", None, None, None, now=now)
    return StartedSession(session_id, entry.id)


def resume_session(session_id: str | None, *, now: datetime, bootstrap_secret: str | None = None) -> AdminKey | None:
    """The key behind a live session, refreshing its idle clock; None when ended, expired or revoked.

    `bootstrap_secret` is ADMIN_KEY from the environment: a session of the bootstrap key it replaced ends too."""
    if not session_id:
        return None
    with unit_of_work() as session:
        row = session.scalar(select(AdminSession).where(AdminSession.session_hash == hash_secret(session_id)))
        if row is None or row.ended_at is not None:
            return None
        key = row.admin_key
        if key.revoked or is_replaced_bootstrap(key, bootstrap_secret) or _expired(row, now):
            row.ended_at = now
            return None
        row.last_seen_at = now
        return key


def end_session(session_id: str, *, actor: Actor, now: datetime) -> None:
    """End the session (logout); ending one that is already over changes nothing."""
    with unit_of_work() as session:
        row = session.scalar(select(AdminSession).where(AdminSession.session_hash == hash_secret(session_id)))
        if row is None or row.ended_at is not None:
            return
        row.ended_at = now
        audit.record(session, actor, "console.logout", None, None, None, now=now)


def _expired(row: AdminSession, now: datetime) -> bool:
    return now - row.last_seen_at > IDLE_TIMEOUT or now - row.created_at > ABSOLUTE_TIMEOUT
