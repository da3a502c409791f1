"""Every protected route: which keys get in, and what a refused caller is told."""

import pytest
from flask import session
from sqlalchemy import select

from app.auth import SESSION_ID, authenticate, current_actor
from app.models import AuditEntry, Role
from app.services import keys, sessions
from app.services.actor import Channel
from app.services.errors import AuthRequired
from tests.conftest import ORIGIN
from tests.factories import SubscriptionFactory

READ_ROUTES = ["/v1/admin/billing/audit", "/v1/admin/billing/subscriptions/user-alice"]


@pytest.fixture(autouse=True)
def alice(tx):
    SubscriptionFactory(user_id="user-alice")


@pytest.mark.parametrize("path", READ_ROUTES)
@pytest.mark.parametrize("role", ["viewer", "support", "admin"])
def test_every_role_may_read(api, path, role):
    assert api(role).get(path).status_code == 200


@pytest.mark.parametrize("path", READ_ROUTES)
@pytest.mark.parametrize("key", [None, "", "bok_unknown-key-0123456789"])
def test_a_missing_or_unknown_key_is_auth_required(client, path, key):
    headers = {} if key is None else {"X-Admin-Key": key}
    resp = client.get(path, headers=headers)
    assert resp.status_code == 403
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["code"] == "auth_required"


def test_a_revoked_key_is_auth_required(client, make_key, cli_actor, frozen_clock):
    secret = make_key("admin", name="retired")
    assert client.get(READ_ROUTES[0], headers={"X-Admin-Key": secret}).status_code == 200
    keys.revoke_key("retired", actor=cli_actor, now=frozen_clock.now)
    resp = client.get(READ_ROUTES[0], headers={"X-Admin-Key": secret})
    assert resp.status_code == 403
    assert resp.get_json()["code"] == "auth_required"
    assert "revoked" in resp.get_json()["detail"]


def test_failed_authentication_is_audited_with_where_it_came_from(client, tx):
    client.get(
        READ_ROUTES[0], headers={"X-Admin-Key": "bok_guess", "User-Agent": "scanner/1.0", "X-Request-ID": "probe-1"}
    )
    [entry] = tx.scalars(select(AuditEntry).where(AuditEntry.action == "auth.failed")).all()
    assert entry.actor == "anonymous"
    assert entry.context == {"channel": "api", "request_id": "probe-1", "ip": "127.0.0.1", "user_agent": "scanner/1.0"}
    assert "not known" in entry.reason


def test_the_admin_key_from_the_environment_works_as_bootstrap(app, client, tx, monkeypatch):
    monkeypatch.setitem(app.config, "ADMIN_KEY", "bok_from-the-environment-0123456789")
    resp = client.get(READ_ROUTES[0], headers={"X-Admin-Key": "bok_from-the-environment-0123456789"})
    assert resp.status_code == 200
    assert resp.get_json()["items"][0]["action"] == "admin_key.create"
    assert resp.get_json()["items"][0]["after"]["name"] == "bootstrap"


def test_a_request_acts_as_its_key_with_where_it_came_from(client, make_key):
    secret = make_key("support", name="tooling")
    with client:  # keeps the request context, so the actor the services received can be inspected
        client.get(
            READ_ROUTES[0], headers={"X-Admin-Key": secret, "User-Agent": "billing-sync/2", "X-Request-ID": "r-9"}
        )
        actor = current_actor()
    assert (actor.name, actor.role, actor.channel) == ("tooling", Role.SUPPORT, Channel.API)
    assert (actor.ip, actor.user_agent, actor.request_id) == ("127.0.0.1", "billing-sync/2", "r-9")


def test_the_console_session_goes_through_the_same_check(app, make_key, cli_actor, frozen_clock):
    secret = make_key("support", name="agent")
    key = keys.authenticate(secret, bootstrap_secret=None, origin=ORIGIN, now=frozen_clock.now)
    started = sessions.start_session(key, actor=cli_actor, now=frozen_clock.now)
    with app.test_request_context("/admin/"):
        session[SESSION_ID] = started.session_id
        actor = authenticate(Channel.CONSOLE)
    assert (actor.name, actor.role, actor.channel, actor.key_id) == ("agent", Role.SUPPORT, Channel.CONSOLE, key.id)
    with app.test_request_context("/admin/"), pytest.raises(AuthRequired, match="Sign in"):
        authenticate(Channel.CONSOLE)
