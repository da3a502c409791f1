"""The shared form machinery, through a test-only page built the way the change pages are (tests/console/probe.py)."""

import re

import pytest

from tests.conftest import build_app
from tests.console import probe
from tests.console.conftest import ConsoleClient

SET = "/admin/probe/set"
BULK = "/admin/probe/bulk"


@pytest.fixture(scope="module")
def probe_console(test_env, migrated_database):
    app = build_app(test_env, WTF_CSRF_ENABLED=True)
    app.register_blueprint(probe.bp)
    return app


@pytest.fixture
def agent(probe_console, tx, make_key):
    probe.STATE.clear()
    probe.STATE["user-alice"] = 100

    def signed_in(role="support"):
        browser = ConsoleClient(probe_console.test_client())
        assert browser.login(make_key(role)).status_code == 302
        return browser

    return signed_in


def field_error(page: str, field: str) -> str:
    """The message under `field`, whose input must be marked invalid and point at it."""
    [tag] = re.findall(rf'<(?:input|select|textarea) [^>]*id="{field}"[^>]*>', page)
    assert 'aria-invalid="true"' in tag and f'aria-describedby="{field}-error"' in tag
    match = re.search(rf'<small id="{field}-error" class="field-error">([^<]*)<', page)
    assert match, f"no inline error on {field}"
    return match.group(1)


@pytest.mark.parametrize(
    "form, field, message",
    [
        ({"user_id": "user-alice", "credits_delta": "ten", "reason": "x"}, "credits_delta", "Enter a whole number"),
        ({"user_id": "user-alice", "credits_delta": "5"}, "reason", "Say why: the reason is kept in the audit log."),
        ({"user_id": "user-ghost", "credits_delta": "5", "reason": "x"}, "user_id", "No customer has the user id"),
        ({"user_id": "user-alice", "credits_delta": "0", "reason": "x"}, "credits_delta", "must change the balance"),
    ],
)
def test_bad_input_is_an_inline_error_and_changes_nothing(agent, form, field, message):
    resp = agent().submit(SET, form)
    assert resp.status_code == 200
    assert message in field_error(resp.get_data(as_text=True), field)
    assert probe.STATE == {"user-alice": 100}


def test_a_broken_rule_is_shown_on_the_form(agent):
    page = agent().submit(SET, {"user_id": "user-alice", "credits_delta": "-500", "reason": "x"}).get_data(as_text=True)
    assert re.search(r'<div class="form-errors" role="alert">\s*<p>Credits would go below zero', page)
    assert probe.STATE == {"user-alice": 100}


def test_success_redirects_and_says_what_changed(agent):
    browser = agent()
    resp = browser.submit(SET, {"user_id": "user-alice", "credits_delta": "500", "reason": "goodwill"})
    assert resp.status_code == 302 and resp.headers["Location"] == SET
    assert "user-alice: credits: 100 → 600." in browser.get(SET).get_data(as_text=True)
    assert probe.STATE == {"user-alice": 600}


def test_a_change_without_csrf_is_refused(agent):
    resp = agent().submit(SET, {"user_id": "user-alice", "credits_delta": "5", "reason": "x"}, csrf=False)
    assert resp.status_code == 400
    assert probe.STATE == {"user-alice": 100}


def test_a_role_without_the_permission_gets_a_403_page_not_a_redirect(agent):
    resp = agent("viewer").submit(SET, {"user_id": "user-alice", "credits_delta": "5", "reason": "x"})
    assert resp.status_code == 403 and resp.mimetype == "text/html"
    page = resp.get_data(as_text=True)
    assert "may not do entitlements.override" in page and "Sign out" in page
    assert probe.STATE == {"user-alice": 100}


def test_a_bulk_action_shows_what_will_happen_then_runs_on_confirmation(agent):
    browser = agent()
    resp = browser.submit(BULK, {"user_id": "user-alice", "credits_delta": "25", "reason": "outage <b>refund</b>"})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "add 25 credits to user-alice" in page
    assert probe.STATE == {"user-alice": 100}  # nothing yet
    carried = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))
    assert carried["user_id"] == "user-alice" and carried["credits_delta"] == "25"
    assert carried["confirmed"] == "yes" and "reason" not in carried  # asked again on the confirmation, as text:
    assert 'name="reason" type="text" value="outage &lt;b&gt;refund&lt;/b&gt;"' in page
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)

    confirm = {**carried, "reason": "outage <b>refund</b>", "csrf_token": token}
    assert browser.client.post(BULK, data=confirm).status_code == 302
    assert probe.STATE == {"user-alice": 125}


def test_a_bulk_action_with_bad_input_never_reaches_the_confirmation(agent):
    page = agent().submit(BULK, {"user_id": "user-alice", "credits_delta": "many"}).get_data(as_text=True)
    assert "Confirm" not in page and "Enter a whole number, e.g. 500." in page
