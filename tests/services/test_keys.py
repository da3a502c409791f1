import pytest
from sqlalchemy import func, select

from app import clock
from app.extensions import db
from app.models import AdminKey, AuditEntry
from app.models.keys import Role
from app.services import audit, keys, sessions
from app.services.actor import Actor, Channel
from app.services.errors import AuthRequired, Conflict, InvalidInput, NotFound, PermissionDenied
from tests.conftest import ORIGIN


def _audit(action):
    return db.session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)).all()


def test_a_new_key_is_random_shown_once_and_stored_hashed(tx, cli_actor, frozen_clock):
    created = keys.create_key("deploy-bot", "support", actor=cli_actor, now=frozen_clock.now)
    other = keys.create_key("other-bot", "support", actor=cli_actor, now=frozen_clock.now)
    assert created.secret.startswith("bok_") and created.secret != other.secret
    assert len(created.secret) - len("bok_") >= 43  # 32 random bytes, base64url
    row = tx.scalar(select(AdminKey).where(AdminKey.name == "deploy-bot"))
    assert row.role == Role.SUPPORT
    assert created.secret not in (row.key_hash, row.key_prefix)
    assert row.key_hash == keys.hash_secret(created.secret)
    entry = tx.get(AuditEntry, created.audit_id)
    assert (entry.action, entry.actor) == ("admin_key.create", "test-operator")
    assert created.secret not in str(entry.after)


@pytest.mark.parametrize(
    "name, role, error",
    [
        ("has space", "viewer", InvalidInput),
        ("", "viewer", InvalidInput),
        ("x" * 65, "viewer", InvalidInput),
        ("ok-name", "superuser", InvalidInput),
        ("bootstrap", "admin", InvalidInput),
    ],
)
def test_bad_names_and_roles_are_refused(tx, cli_actor, name, role, error):
    with pytest.raises(error):
        keys.create_key(name, role, actor=cli_actor, now=clock.utcnow())
    assert tx.scalar(select(func.count()).select_from(AdminKey)) == 0


def test_names_are_unique(tx, cli_actor):
    keys.create_key("ci", "viewer", actor=cli_actor, now=clock.utcnow())
    keys.revoke_key("ci", actor=cli_actor, now=clock.utcnow())
    with pytest.raises(Conflict, match=r"exists already \(revoked keys keep their name"):
        keys.create_key("ci", "admin", actor=cli_actor, now=clock.utcnow())


def test_only_admins_manage_keys(tx):
    support = Actor(name="agent", role=Role.SUPPORT, channel=Channel.API)
    with pytest.raises(PermissionDenied):
        keys.create_key("sneaky", "admin", actor=support, now=clock.utcnow())
    with pytest.raises(PermissionDenied):
        keys.list_keys(actor=support)


def test_listing_shows_everything_but_the_key(tx, cli_actor):
    created = keys.create_key("reporting", "viewer", actor=cli_actor, now=clock.utcnow())
    [info] = keys.list_keys(actor=cli_actor)
    assert (info.name, info.role, info.revoked_at) == ("reporting", Role.VIEWER, None)
    assert created.secret not in repr(info)


def test_authenticate_accepts_a_live_key_and_records_its_use(tx, cli_actor, frozen_clock):
    created = keys.create_key("tooling", "support", actor=cli_actor, now=frozen_clock.now)
    frozen_clock.advance(minutes=3)
    key = keys.authenticate(created.secret, bootstrap_secret=None, origin=ORIGIN, now=frozen_clock.now)
    assert key.name == "tooling"
    assert tx.scalar(select(AdminKey.last_used_at).where(AdminKey.name == "tooling")) == frozen_clock.now


@pytest.mark.parametrize("secret", [None, "", "bok_not-a-real-key", "x" * 5000])
def test_authenticate_refuses_missing_and_unknown_keys(tx, secret):
    with pytest.raises(AuthRequired):
        keys.authenticate(secret, bootstrap_secret=None, origin=ORIGIN, now=clock.utcnow())


def test_a_revoked_key_is_refused_and_its_sessions_end(tx, cli_actor, frozen_clock):
    created = keys.create_key("leaver", "support", actor=cli_actor, now=frozen_clock.now)
    key = keys.authenticate(created.secret, bootstrap_secret=None, origin=ORIGIN, now=frozen_clock.now)
    started = sessions.start_session(key, actor=cli_actor, now=frozen_clock.now)
    info = keys.revoke_key("leaver", actor=cli_actor, now=frozen_clock.now)
    assert info.revoked_at == frozen_clock.now
    with pytest.raises(AuthRequired, match="revoked"):
        keys.authenticate(created.secret, bootstrap_secret=None, origin=ORIGIN, now=frozen_clock.now)
    assert sessions.resume_session(started.session_id, now=frozen_clock.now) is None
    assert [e.before["revoked_at"] for e in _audit("admin_key.revoke")] == [None]


def test_revoking_an_unknown_key_says_so(tx, cli_actor):
    with pytest.raises(NotFound, match="No key is named"):
        keys.revoke_key("nobody", actor=cli_actor, now=clock.utcnow())


def test_admin_key_from_the_environment_is_registered_once_as_bootstrap(tx, frozen_clock):
    secret = "env-admin-key-0123456789-0123456789"
    for _ in range(3):
        key = keys.authenticate(secret, bootstrap_secret=secret, origin=ORIGIN, now=frozen_clock.now)
    assert (key.name, key.role) == ("bootstrap", Role.ADMIN)
    assert tx.scalar(select(func.count()).select_from(AdminKey)) == 1
    assert key.key_prefix == "(ADMIN_KEY)"  # none of an operator-chosen secret is ever shown
    [entry] = _audit("admin_key.create")
    assert (entry.actor, entry.context["ip"], entry.context["request_id"]) == ("bootstrap", "192.0.2.10", "req-test")


def test_a_changed_admin_key_replaces_the_old_one(tx, frozen_clock):
    old, new = "env-admin-key-old-0123456789abcdef", "env-admin-key-new-0123456789abcdef"
    keys.authenticate(old, bootstrap_secret=old, origin=ORIGIN, now=frozen_clock.now)
    with pytest.raises(AuthRequired):
        keys.authenticate(old, bootstrap_secret=new, origin=ORIGIN, now=frozen_clock.now)
    assert keys.authenticate(new, bootstrap_secret=new, origin=ORIGIN, now=frozen_clock.now).name == "bootstrap"
    with pytest.raises(AuthRequired):
        keys.authenticate(old, bootstrap_secret=new, origin=ORIGIN, now=frozen_clock.now)
    assert tx.scalar(select(func.count()).select_from(AdminKey)) == 1


def test_a_revoked_bootstrap_key_stays_revoked(tx, cli_actor, frozen_clock):
    secret = "env-admin-key-0123456789-0123456789"
    keys.authenticate(secret, bootstrap_secret=secret, origin=ORIGIN, now=frozen_clock.now)
    keys.revoke_key("bootstrap", actor=cli_actor, now=frozen_clock.now)
    with pytest.raises(AuthRequired, match="revoked"):
        keys.authenticate(secret, bootstrap_secret=secret, origin=ORIGIN, now=frozen_clock.now)


def _from(ip, user_agent=None):
    return Actor(name="anonymous", role=Role.VIEWER, channel=Channel.API, ip=ip, user_agent=user_agent)


def test_failures_beyond_the_quota_of_an_address_are_summarised_once_the_minute_is_over(tx, frozen_clock):
    minute = frozen_clock.now
    written = [keys.record_auth_failure(_from("203.0.113.7"), "unknown key", now=minute) for _ in range(12)]
    assert written == [True] * 10 + [False] * 2
    assert keys.record_auth_failure(_from("198.51.100.1"), "unknown key", now=minute)
    assert keys.failures_in_window("203.0.113.7", minute) == 12
    assert len(_audit("auth.failed")) == 11

    frozen_clock.advance(minutes=1, seconds=1)
    assert keys.record_auth_failure(_from("203.0.113.7"), "unknown key", now=frozen_clock.now)
    assert keys.failures_in_window("203.0.113.7", frozen_clock.now) == 1
    *_, summary, fresh = _audit("auth.failed")
    assert summary.after == {"suppressed": 2, "window_start": minute.isoformat()}
    assert summary.context["ip"] == "203.0.113.7"
    assert "2 more failed authentications from 203.0.113.7" in summary.reason
    assert fresh.after is None and fresh.created_at == frozen_clock.now
    assert len(_audit("auth.failed")) == 13


def test_an_overall_quota_bounds_the_rows_many_addresses_can_write(tx, frozen_clock):
    minute = frozen_clock.now
    for n in range(40):
        keys.record_auth_failure(_from(f"198.51.100.{n}"), "unknown key", now=minute)
    for _ in range(3):  # an address that had a row of its own is summarised on its own
        keys.record_auth_failure(_from("198.51.100.0"), "unknown key", now=minute)
    assert len(_audit("auth.failed")) == keys.AUTH_FAILURES_AUDITED_OVERALL == 30

    assert keys.flush_auth_failures(frozen_clock.advance(minutes=1)) == 2
    assert keys.flush_auth_failures(frozen_clock.now) == 0  # written once
    summaries = [entry for entry in _audit("auth.failed") if entry.after]
    assert [(s.context["ip"], s.after) for s in summaries] == [
        ("198.51.100.0", {"suppressed": 3, "window_start": minute.isoformat()}),
        (None, {"suppressed": 10, "addresses": 10, "window_start": minute.isoformat()}),
    ]


def test_a_nul_or_lone_surrogate_in_the_user_agent_or_the_key_still_gets_its_row(tx, frozen_clock):
    with pytest.raises(AuthRequired):
        keys.authenticate("bok_\x00\ud800", bootstrap_secret="bok_\udfff", origin=ORIGIN, now=frozen_clock.now)
    assert keys.record_auth_failure(_from("192.0.2.1", "scan\x00ner\ud800"), "unknown key", now=frozen_clock.now)
    [entry] = _audit("auth.failed")
    assert entry.context["user_agent"] == "scan\ufffdner\ufffd"
    assert audit.verify_chain().ok
