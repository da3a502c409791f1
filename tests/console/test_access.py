"""Who gets into the console: sign-in, sessions, the failed sign-in limit, CSRF and roles."""

import pytest
from sqlalchemy import select

from app.models import AdminSession, AuditEntry
from app.services import keys
from tests.conftest import build_app
from tests.console.conftest import LOGIN, ConsoleClient
from tests.factories import BillingEventFactory, SubscriptionFactory

PAGES = [
    "/admin/",
    "/admin/customers",
    "/admin/customers?q=user-alice",
    "/admin/customers/user-alice",
    "/admin/audit",
    "/admin/events",
    "/admin/events?status=failed",
    "/admin/events/evt_alice",
    "/admin/plans",
    "/admin/reconcile",
    "/admin/reconcile?kind=status",
]


@pytest.fixture(autouse=True)
def alice(tx):
    SubscriptionFactory(user_id="user-alice")
    BillingEventFactory(event_id="evt_alice", user_id="user-alice", type="customer.updated")


def audit_actions(tx, action):
    return tx.scalars(select(AuditEntry).where(AuditEntry.action == action)).all()


@pytest.mark.parametrize("path", PAGES)
def test_an_anonymous_browser_is_sent_to_sign_in_and_back(console, path):
    resp = console.get(path)
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith(LOGIN + "?next=")
    login_page = console.get(resp.headers["Location"])
    assert login_page.status_code == 200 and 'name="admin_key"' in login_page.get_data(as_text=True)


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("role", ["viewer", "support", "admin"])
def test_every_role_may_read_every_page(console_as, path, role):
    resp = console_as(role).get(path, follow_redirects=True)
    assert resp.status_code == 200
    assert resp.mimetype == "text/html"


def test_signing_in_starts_an_audited_console_session(console, make_key, tx):
    resp = console.login(make_key("support", name="agent"))
    assert resp.status_code == 302 and resp.headers["Location"] == "/admin/"
    [entry] = audit_actions(tx, "console.login")
    assert (entry.actor, entry.context["channel"]) == ("agent", "console")
    page = console.get("/admin/").get_data(as_text=True)
    assert "Signed in as agent (support)." in page


def test_the_cookie_holds_a_random_id_never_the_key(console, make_key):
    secret = make_key("admin")
    resp = console.login(secret)
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert secret not in cookie
    assert console.session_id() and console.session_id() != secret


def test_sign_in_returns_to_the_page_asked_for(console, make_key):
    resp = console.login(make_key("viewer"), next_path="/admin/audit?actor=ann")
    assert resp.headers["Location"] == "/admin/audit?actor=ann"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "/\t/evil.example"])
def test_sign_in_never_redirects_off_site(console, make_key, target):
    resp = console.submit(LOGIN, {"admin_key": make_key("viewer"), "next": target})
    assert resp.headers["Location"] == "/admin/"


def test_every_sign_in_gets_a_new_session_id(console, make_key):
    with console.client.session_transaction() as session:
        session["sid"] = "planted-by-an-attacker"
    secret = make_key("viewer")
    console.login(secret)
    first = console.session_id()
    console.login(secret)
    second = console.session_id()
    assert len({"planted-by-an-attacker", first, second}) == 3


def test_a_wrong_key_shows_the_form_again_with_401_and_is_audited(console, tx):
    resp = console.login("bok_not-a-real-key")
    assert resp.status_code == 401
    page = resp.get_data(as_text=True)
    assert 'aria-invalid="true"' in page and "not known" in page
    [entry] = audit_actions(tx, "auth.failed")
    assert (entry.actor, entry.context["channel"]) == ("anonymous", "console")
    assert console.session_id() is None


def test_an_empty_key_is_not_an_attempt(console, tx):
    resp = console.submit(LOGIN, {"admin_key": ""})
    assert resp.status_code == 401
    assert "Enter your admin key." in resp.get_data(as_text=True)
    assert audit_actions(tx, "auth.failed") == []


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_a_login_without_a_valid_csrf_token_is_refused_and_not_counted(console, make_key, tx, token):
    body = {"admin_key": make_key("admin")} | ({"csrf_token": token} if token else {})
    resp = console.client.post(LOGIN, data=body)
    assert resp.status_code == 400
    assert "The form expired" in resp.get_data(as_text=True)
    assert console.session_id() is None
    assert audit_actions(tx, "console.login") == [] and audit_actions(tx, "auth.failed") == []


def test_the_11th_failed_sign_in_a_minute_is_refused_by_every_worker(test_env, tx, make_key, frozen_clock):
    """Two app instances on one database, as two gunicorn workers: the count lives in the database."""
    first, second = (ConsoleClient(build_app(test_env, WTF_CSRF_ENABLED=True).test_client()) for _ in range(2))
    for attempt in range(10):
        worker = first if attempt % 2 else second
        assert worker.login(f"bok_guess-{attempt}").status_code == 401
    good = make_key("admin")
    resp = first.login(good)
    assert resp.status_code == 429
    assert "Too many failed sign-ins" in resp.get_data(as_text=True)
    assert second.login(good).status_code == 429
    assert first.session_id() is None

    frozen_clock.advance(seconds=61)
    assert second.login(good).status_code == 302


def test_signing_out_ends_the_session_for_good(console_as, tx):
    browser = console_as("support")
    old_id = browser.session_id()
    resp = browser.logout()
    assert resp.status_code == 302 and resp.headers["Location"] == LOGIN
    assert "Signed out." in browser.get(LOGIN).get_data(as_text=True)
    assert browser.get("/admin/").status_code == 302
    with browser.client.session_transaction() as session:  # replay the old cookie's id
        session["sid"] = old_id
    assert browser.get("/admin/").headers["Location"].startswith(LOGIN)
    assert len(audit_actions(tx, "console.logout")) == 1


def test_sign_out_needs_a_csrf_token(console_as, tx):
    browser = console_as("viewer")
    resp = browser.submit("/admin/logout", csrf=False)
    assert resp.status_code == 400
    assert browser.get("/admin/").status_code == 200
    assert audit_actions(tx, "console.logout") == []


def test_sign_out_is_post_only(console_as):
    assert console_as("viewer").get("/admin/logout").status_code == 405


def test_a_session_ends_after_30_idle_minutes(console_as, frozen_clock):
    browser = console_as("viewer")
    frozen_clock.advance(minutes=29)
    assert browser.get("/admin/").status_code == 200
    frozen_clock.advance(minutes=31)
    resp = browser.get("/admin/audit")
    assert resp.status_code == 302 and resp.headers["Location"] == f"{LOGIN}?next=/admin/audit"
    assert browser.session_id() is None


def test_a_session_ends_after_12_hours_however_busy(console_as, frozen_clock):
    browser = console_as("viewer")
    for _ in range(12 * 2):
        frozen_clock.advance(minutes=29, seconds=59)
        assert browser.get("/admin/").status_code == 200
    frozen_clock.advance(minutes=1)
    assert browser.get("/admin/").status_code == 302


def test_revoking_the_key_ends_its_sessions(console_as, cli_actor, frozen_clock, tx):
    browser = console_as("admin")
    [session] = tx.scalars(select(AdminSession)).all()
    keys.revoke_key(session.admin_key.name, actor=cli_actor, now=frozen_clock.now)
    assert browser.get("/admin/").status_code == 302


def test_a_new_admin_key_ends_the_old_ones_sessions_before_anyone_uses_it(console, console_app, monkeypatch):
    """The documented answer to a leaked ADMIN_KEY: restart with a new value; whoever signed in with the old one
    is out at once, not only once someone presents the new value."""
    old, new = "env-admin-key-old-0123456789abcdef", "env-admin-key-new-0123456789abcdef"
    monkeypatch.setitem(console_app.config, "ADMIN_KEY", old)
    assert console.login(old).status_code == 302
    assert console.get("/admin/").status_code == 200
    monkeypatch.setitem(console_app.config, "ADMIN_KEY", new)
    assert console.get("/admin/").status_code == 302
    monkeypatch.setitem(console_app.config, "ADMIN_KEY", old)  # and the session does not come back
    assert console.get("/admin/").status_code == 302


def test_the_root_leads_to_the_console_and_its_sign_in(console):
    resp = console.get("/", follow_redirects=True)
    assert resp.request.path == LOGIN


def test_the_login_page_links_the_api_docs(console):
    assert 'href="/docs"' in console.get(LOGIN).get_data(as_text=True)
