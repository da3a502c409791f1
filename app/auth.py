"""The one admin-key check: X-Admin-Key for the JSON API, the session cookie for the console."""

from __future__ import annotations

from flask import current_app, g, request, session

from app import clock
from app.models.keys import AdminKey, Role
from app.observability import request_id
from app.services import keys, sessions
from app.services.actor import Actor, Channel
from app.services.errors import AuthRequired
from app.services.inputs import printable

ADMIN_KEY_HEADER = "X-Admin-Key"
SESSION_ID = "sid"  # the console's signed cookie holds this random id, never the key


def current_actor() -> Actor:
    """The actor authenticated for this request (set by `authenticate`)."""
    return g.actor


def authenticate(channel: Channel) -> Actor:
    """Resolve this request's credential into an Actor, or raise AuthRequired.

    API failures are audited here; the console audits failed logins where the key is typed.
    """
    now = clock.utcnow()
    if channel is Channel.API:
        origin = anonymous_actor(channel)
        try:
            key = keys.authenticate(
                request.headers.get(ADMIN_KEY_HEADER),
                bootstrap_secret=current_app.config["ADMIN_KEY"],
                origin=origin,
                now=now,
            )
        except AuthRequired as exc:
            keys.record_auth_failure(origin, exc.detail, now=now)
            raise
    else:
        key = sessions.resume_session(
            session.get(SESSION_ID), bootstrap_secret=current_app.config["ADMIN_KEY"], now=now
        )
        if key is None:
            raise AuthRequired("Sign in with your admin key.")
    g.actor = actor_for(key, channel)
    return g.actor


def actor_for(key: AdminKey, channel: Channel) -> Actor:
    """The Actor for `key` acting through this request."""
    return Actor(name=key.name, role=key.role, channel=channel, key_id=key.id, **_request_fields())


def anonymous_actor(channel: Channel) -> Actor:
    """Who is named in the audit log when no key could be identified."""
    return Actor(name="anonymous", role=Role.VIEWER, channel=channel, **_request_fields())


def _request_fields() -> dict[str, str | None]:
    return {
        "request_id": request_id(),
        "ip": request.remote_addr,
        "user_agent": printable(request.user_agent.string[:300]) or None,  # the audit context is stored as JSON
    }
