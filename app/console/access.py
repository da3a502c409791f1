"""Who may see console pages: the session gate, sign-in and sign-out, and the failed sign-in limit."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, redirect, request, session, url_for
from werkzeug.wrappers import Response

from app.auth import SESSION_ID, anonymous_actor, authenticate, current_actor
from app.models.keys import AdminKey
from app.services import keys, sessions
from app.services.actor import Actor, Channel
from app.services.errors import AuthRequired
from app.services.permissions import Permission, require

PUBLIC_ENDPOINTS = frozenset({"console.login"})
FAILED_SIGN_INS_PER_MINUTE = 10  # the next sign-in from that address in the same minute gets a 429


def require_session() -> Response | None:
    """Before every console view but the login page: resume the session, or send the browser to sign in."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    try:
        authenticate(Channel.CONSOLE)
    except AuthRequired:
        session.pop(SESSION_ID, None)
        back = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("console.login", next=back))
    return None


def requires(permission: Permission) -> Callable:
    """A page only roles holding `permission` may open (a viewer never sees a change form): the others get the
    403 page. The service behind it checks again."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def gated(*args: Any, **kwargs: Any) -> Any:
            require(current_actor(), permission)
            return view(*args, **kwargs)

        return gated

    return decorate


def login_limited(ip: str | None, *, now: datetime) -> bool:
    """Whether `ip` has used up its failed sign-ins for this minute.

    Counted in the database (`keys.failures_in_window`, API failures included), so every gunicorn worker agrees.
    """
    return keys.failures_in_window(ip, now) >= FAILED_SIGN_INS_PER_MINUTE


def check_key(secret: str, *, origin: Actor, now: datetime) -> AdminKey:
    """The live key for `secret`; a wrong one is audited as `auth.failed` (channel console) and re-raised."""
    try:
        return keys.authenticate(secret, bootstrap_secret=current_app.config["ADMIN_KEY"], origin=origin, now=now)
    except AuthRequired as exc:
        keys.record_auth_failure(origin, exc.detail, now=now)
        raise


def sign_in(key: AdminKey, actor: Actor, *, now: datetime) -> None:
    """Start a server-side session under a new id; nothing of the previous cookie (CSRF token included) survives."""
    session.clear()
    started = sessions.start_session(key, actor=actor, now=now)
    session[SESSION_ID] = started.session_id


def sign_out(actor: Actor, *, now: datetime) -> None:
    """End the server-side session and forget the cookie's contents."""
    sessions.end_session(session[SESSION_ID], actor=actor, now=now)
    session.clear()


def origin() -> Actor:
    """Who is trying to sign in, as the audit log names them."""
    return anonymous_actor(Channel.CONSOLE)


def safe_next(target: str | None) -> str | None:
    """`target` if it is a path on this site (`/admin/...`), else None: never a redirect to another host."""
    # Browsers read `/\host` as `//host` and drop tabs and newlines, so refuse those outright.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    if any(char.isspace() or not char.isprintable() for char in target):
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None
