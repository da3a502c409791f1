"""Admin keys: create, list, revoke, and authenticate a presented key."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import Row, delete, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.extensions import db
from app.models.keys import AdminKey, AdminSession, AuthFailureCount, Role
from app.services import audit
from app.services.actor import Actor, Channel
from app.services.errors import AuthRequired, Conflict, InvalidInput, NotFound
from app.services.permissions import Permission, require
from app.services.uow import insert_on_conflict, unit_of_work

KEY_PREFIX = "bok_"
BOOTSTRAP_NAME = "bootstrap"
# ADMIN_KEY is chosen by an operator and may be weak: show none of it, not even its first characters.
BOOTSTRAP_LABEL = "(ADMIN_KEY)"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # fullmatch: "$" would let a trailing newline in
# last_used_at is a hint, not an audit: write it at most this often per key.
_LAST_USED_PRECISION = timedelta(minutes=1)
# Failed authentications are counted per minute; each is audited within two quotas a minute, one per client
# address and one overall (so many addresses cannot flood the log either). What they keep out is summarised.
AUTH_FAILURES_AUDITED_PER_ADDRESS = 10
AUTH_FAILURES_AUDITED_OVERALL = 30
ALL_ADDRESSES = "*"  # the overall counter's key; no normalised address looks like it


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown of a key: never the key itself."""

    name: str
    role: Role
    key_prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: AdminKey) -> KeyInfo:
        return cls(key.name, key.role, key.key_prefix, key.created_at, key.last_used_at, key.revoked_at)

    def snapshot(self) -> dict:
        return {"name": self.name, "role": self.role, "key_prefix": self.key_prefix, "revoked_at": self.revoked_at}


@dataclass(frozen=True)
class CreatedKey:
    info: KeyInfo
    secret: str  # shown once, never stored
    audit_id: int


def generate_secret() -> str:
    """A new key: 32 random bytes (256 bits), URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """SHA-256 is enough: keys carry 256 bits of entropy, so there is nothing to brute-force slowly."""
    return hashlib.sha256(_utf8(secret)).hexdigest()


def _utf8(secret: str) -> bytes:
    """A presented secret as bytes; a lone surrogate (no real key has one) must fail the lookup, not crash it."""
    return secret.encode("utf-8", "surrogatepass")


def create_key(name: str, role: Role | str, *, actor: Actor, now: datetime) -> CreatedKey:
    """Register a new named key with `role`; the secret is returned once."""
    require(actor, Permission.MANAGE_KEYS)
    if not _NAME.fullmatch(name):
        raise InvalidInput("name", "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if name == BOOTSTRAP_NAME:
        raise InvalidInput("name", f"{BOOTSTRAP_NAME!r} is reserved for ADMIN_KEY from the environment")
    role = _role(role)
    secret = generate_secret()
    with unit_of_work() as session:
        if session.scalar(select(AdminKey.id).where(AdminKey.name == name)) is not None:
            raise Conflict(
                f"A key named {name!r} exists already (revoked keys keep their name, so the audit log stays "
                "unambiguous); pick another name."
            )
        key = _new_key(name, role, secret, now)
        session.add(key)
        session.flush()
        info = KeyInfo.of(key)
        entry = audit.record(session, actor, "admin_key.create", None, None, info.snapshot(), now=now)
    return CreatedKey(info, secret, entry.id)


def list_keys(*, actor: Actor) -> list[KeyInfo]:
    """Every key, oldest first."""
    require(actor, Permission.MANAGE_KEYS)
    return [KeyInfo.of(key) for key in db.session.scalars(select(AdminKey).order_by(AdminKey.id))]


def revoke_key(name: str, *, actor: Actor, now: datetime) -> KeyInfo:
    """Revoke the key called `name` and end its console sessions."""
    require(actor, Permission.MANAGE_KEYS)
    with unit_of_work() as session:
        key = session.scalar(select(AdminKey).where(AdminKey.name == name).with_for_update())
        if key is None:
            raise NotFound(f"No key is named {name!r}; `admin-keys list` shows the names.")
        if key.revoked:
            return KeyInfo.of(key)
        before = KeyInfo.of(key).snapshot()
        key.revoked_at = now
        _end_sessions(session, key, now)
        info = KeyInfo.of(key)
        audit.record(session, actor, "admin_key.revoke", None, before, info.snapshot(), now=now)
    return info


def authenticate(secret: str | None, *, bootstrap_secret: str | None, origin: Actor, now: datetime) -> AdminKey:
    """The live key matching `secret`, or AuthRequired.

    Keys are found by their hash (an index lookup that leaks nothing about the secret) and the
    hashes then compared in constant time. `bootstrap_secret` is ADMIN_KEY from the environment;
    `origin` says where the attempt comes from, for the audit log.
    """
    if not secret:
        raise AuthRequired("Send an admin key in the X-Admin-Key header.")
    digest = hash_secret(secret)
    if bootstrap_secret and hmac.compare_digest(_utf8(secret), _utf8(bootstrap_secret)):
        key = register_bootstrap_key(secret, actor=replace(origin, name=BOOTSTRAP_NAME, role=Role.ADMIN), now=now)
    else:
        key = db.session.scalar(select(AdminKey).where(AdminKey.key_hash == digest))
        if key is not None and is_replaced_bootstrap(key, bootstrap_secret):
            key = None
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        raise AuthRequired("The admin key is not known. Check it, or ask an admin for a new one.")
    if key.revoked:
        raise AuthRequired(f"The admin key {key.name!r} was revoked. Ask an admin for a new one.")
    _touch(key, now)
    return key


def is_replaced_bootstrap(key: AdminKey, bootstrap_secret: str | None) -> bool:
    """Whether `key` is the bootstrap key of an ADMIN_KEY since replaced in the environment: refused at once,
    by the API and for console sessions, even before the new value is first used and stored."""
    return (
        key.name == BOOTSTRAP_NAME
        and bool(bootstrap_secret)
        and not hmac.compare_digest(key.key_hash, hash_secret(bootstrap_secret))
    )


def register_bootstrap_key(secret: str, *, actor: Actor, now: datetime) -> AdminKey | None:
    """Register ADMIN_KEY as the admin key `bootstrap`, idempotently; a changed ADMIN_KEY replaces it."""
    digest = hash_secret(secret)
    registered = db.session.scalar(select(AdminKey).where(AdminKey.name == BOOTSTRAP_NAME))
    if registered is not None and registered.key_hash == digest:
        return registered  # the usual case, every request: no lock, no commit (which would expire the key)
    try:
        with unit_of_work() as session:
            key = session.scalar(select(AdminKey).where(AdminKey.name == BOOTSTRAP_NAME).with_for_update())
            if key is not None and key.key_hash == digest:
                return key  # revoked stays revoked until ADMIN_KEY changes
            before = KeyInfo.of(key).snapshot() if key else None
            if key is None:
                key = AdminKey(
                    name=BOOTSTRAP_NAME, role=Role.ADMIN, key_hash=digest, key_prefix=BOOTSTRAP_LABEL, created_at=now
                )
                session.add(key)
            else:  # ADMIN_KEY changed (the answer to a leak): sessions opened with the old value end, as on revocation
                key.key_hash, key.revoked_at = digest, None
                _end_sessions(session, key, now)
            session.flush()
            audit.record(
                session,
                actor,
                "admin_key.create",
                None,
                before,
                KeyInfo.of(key).snapshot(),
                now=now,
                reason="ADMIN_KEY from the environment",
            )
            return key
    except IntegrityError:  # another process registered it at the same moment
        return db.session.scalar(select(AdminKey).where(AdminKey.key_hash == digest))


def record_auth_failure(actor: Actor, reason: str, *, now: datetime) -> bool:
    """Count a failed authentication from `actor.ip` and audit it if both quotas allow; True when audited.

    Failures beyond a quota are counted, not lost: once their minute is over, `flush_auth_failures` (run first
    here, and by the worker) writes how many there were, so an attacker can neither flood the log nor hide in it.
    """
    flush_auth_failures(now)
    window, address = _window(now), _address(actor.ip)
    with unit_of_work() as session:
        # Lock order, here and in the flush: the address's counter, then the overall one, then the audit chain.
        audited = (
            _count_failure(session, address, window) <= AUTH_FAILURES_AUDITED_PER_ADDRESS
            and _count_failure(session, ALL_ADDRESSES, window) <= AUTH_FAILURES_AUDITED_OVERALL
        )
        if audited:
            session.execute(
                update(AuthFailureCount)
                .where(AuthFailureCount.address.in_([address, ALL_ADDRESSES]), AuthFailureCount.window_start == window)
                .values(audited=AuthFailureCount.audited + 1)
            )
            audit.record(session, actor, "auth.failed", None, None, None, now=now, reason=reason)
    return audited


def failures_in_window(ip: str | None, now: datetime) -> int:
    """Failed authentications from `ip` in the current minute, audited or not, counted by every process."""
    return (
        db.session.scalar(
            select(AuthFailureCount.failures).where(
                AuthFailureCount.address == _address(ip), AuthFailureCount.window_start == _window(now)
            )
        )
        or 0
    )


def flush_auth_failures(now: datetime) -> int:
    """Audit what the quotas kept out of the log in minutes that are over; returns the summary rows written.

    One `auth.failed` row per address that had rows of its own, and one for the addresses the overall quota
    kept out entirely, each with `after: {"suppressed": n, "window_start": ...}`. The counters are then deleted.
    """
    with unit_of_work() as session:
        closed = (
            select(AuthFailureCount.address, AuthFailureCount.window_start)
            .where(AuthFailureCount.window_start < _window(now))
            .order_by(AuthFailureCount.address == ALL_ADDRESSES, AuthFailureCount.address)
            .with_for_update()
        )
        counts = session.execute(
            delete(AuthFailureCount)
            .where(tuple_(AuthFailureCount.address, AuthFailureCount.window_start).in_(closed))
            .returning(*AuthFailureCount.__table__.columns)
            .execution_options(synchronize_session=False)
        )
        summaries = _suppressed(counts)
        in_order = sorted(summaries.items(), key=lambda item: (item[0][1], item[0][0] == ALL_ADDRESSES, item[0][0]))
        for (address, window), (suppressed, addresses) in in_order:
            _audit_suppressed(session, address, window, suppressed, addresses, now=now)
    return len(summaries)


def _suppressed(counts: Iterable[Row]) -> dict[tuple[str, datetime], tuple[int, int]]:
    """(address, minute) → (failures not audited, addresses they came from); ALL_ADDRESSES gathers those
    that the overall quota kept out entirely, so there are at most AUTH_FAILURES_AUDITED_OVERALL + 1 a minute."""
    summaries: dict[tuple[str, datetime], tuple[int, int]] = {}
    for count in counts:
        if count.address == ALL_ADDRESSES or count.failures == count.audited:
            continue
        key = (count.address if count.audited else ALL_ADDRESSES, count.window_start)
        suppressed, addresses = summaries.get(key, (0, 0))
        summaries[key] = (suppressed + count.failures - count.audited, addresses + 1)
    return summaries


def _audit_suppressed(
    session: Session, address: str, window: datetime, suppressed: int, addresses: int, *, now: datetime
) -> None:
    after = {"suppressed": suppressed, "window_start": window}
    if address == ALL_ADDRESSES:
        after["addresses"] = addresses
        ip, source = None, f"{addresses} addresses that had no row of their own (overall quota)"
    else:
        ip, source = address, f"{address} beyond its quota"
    actor = Actor(name="anonymous", role=Role.VIEWER, channel=Channel.WORKER, ip=ip)
    reason = f"{suppressed} more failed authentications from {source} in the minute from {window:%H:%M}Z"
    audit.record(session, actor, "auth.failed", None, None, after, now=now, reason=reason)


def _count_failure(session: Session, address: str, window: datetime) -> int:
    """Add one failure to a counter and return the new count, atomically (the row stays locked until commit)."""
    stmt = insert_on_conflict(session, AuthFailureCount).values(
        address=address, window_start=window, failures=1, audited=0
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[AuthFailureCount.address, AuthFailureCount.window_start],
        set_={"failures": AuthFailureCount.failures + 1},
    )
    return session.scalar(stmt.returning(AuthFailureCount.failures))


def _window(now: datetime) -> datetime:
    """The start of the minute `now` falls in (the quotas' window)."""
    return now.astimezone(UTC).replace(second=0, microsecond=0)


def _address(ip: str | None) -> str:
    """The counter's key for a client address: normalised, so one address has one counter; never ALL_ADDRESSES."""
    try:
        return str(ipaddress.ip_address(ip or ""))[:64]
    except ValueError:
        return "unknown"


def _end_sessions(session: Session, key: AdminKey, now: datetime) -> None:
    session.execute(
        update(AdminSession)
        .where(AdminSession.admin_key_id == key.id, AdminSession.ended_at.is_(None))
        .values(ended_at=now)
    )


def _new_key(name: str, role: Role, secret: str, now: datetime) -> AdminKey:
    """A generated key; its first characters (6 of 43 random ones) are safe to show."""
    prefix = secret[: len(KEY_PREFIX) + 6]
    return AdminKey(name=name, role=role, key_hash=hash_secret(secret), key_prefix=prefix, created_at=now)


def _role(value: Role | str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput("role", f"must be one of {', '.join(Role)}") from None


def _touch(key: AdminKey, now: datetime) -> None:
    if key.last_used_at is None or now - key.last_used_at >= _LAST_USED_PRECISION:
        with unit_of_work():
            key.last_used_at = now
