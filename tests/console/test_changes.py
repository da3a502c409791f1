"""The override and grace reset forms: roles, CSRF, inline errors with nothing changed, reason, PRG, messages."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.models import AuditEntry, GracePeriod, Subscription
from app.services import grace
from tests.console.conftest import LOGIN
from tests.console.test_forms import field_error
from tests.factories import CustomerFactory, GracePeriodFactory, PlanFactory, SubscriptionFactory

OVERRIDE = "/admin/override"
GRACE = "/admin/grace-reset"
XSS = '<script>alert("x")</script>'


@pytest.fixture(autouse=True)
def alice(tx, frozen_clock):
    PlanFactory(code="pro")
    PlanFactory(code="team")
    PlanFactory(code="legacy", active=False)
    return SubscriptionFactory(user_id="user-alice", plan="pro", credits=100)


@pytest.fixture
def agent(console_as):
    return console_as("support")


def audit_count(tx) -> int:
    """Audit rows of the changes these forms make (sign-ins and key creation are audited too)."""
    changes = ("entitlements.override", "grace.reset")
    return tx.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action.in_(changes)))


def subscription(tx, user_id="user-alice") -> tuple:
    row = tx.scalar(select(Subscription).where(Subscription.user_id == user_id))
    tx.refresh(row)
    return row.plan, row.credits, row.valid_until


@pytest.mark.parametrize("path", [OVERRIDE, GRACE])
def test_an_anonymous_browser_is_sent_to_sign_in(console, path):
    resp = console.get(path)
    assert resp.status_code == 302 and resp.headers["Location"].startswith(f"{LOGIN}?next=")


@pytest.mark.parametrize("path", [OVERRIDE, GRACE])
@pytest.mark.parametrize("role, status", [("viewer", 403), ("support", 200), ("admin", 200)])
def test_the_forms_are_for_support_and_admin(console_as, path, role, status):
    resp = console_as(role).get(path)
    assert resp.status_code == status and resp.mimetype == "text/html"
    assert ('name="reason"' in resp.get_data(as_text=True)) is (status == 200)


@pytest.mark.parametrize(
    "path, form",
    [
        (OVERRIDE, {"user_id": "user-alice", "credits": "5", "reason": "x"}),
        (GRACE, {"user_id": "user-alice", "days": "7", "reason": "x"}),
    ],
)
def test_a_viewer_posting_anyway_gets_a_403_page_and_changes_nothing(console_as, tx, path, form):
    viewer = console_as("viewer")
    resp = viewer.submit(path, form, form_page="/admin/")
    assert resp.status_code == 403 and "Sign out" in resp.get_data(as_text=True)
    assert subscription(tx)[1] == 100 and audit_count(tx) == 0


@pytest.mark.parametrize(
    "path, form",
    [
        (OVERRIDE, {"user_id": "user-alice", "credits": "5", "reason": "x"}),
        (GRACE, {"user_id": "user-alice", "days": "7", "reason": "x"}),
    ],
)
def test_a_change_without_csrf_is_refused(agent, tx, path, form):
    assert agent.submit(path, form, csrf=False).status_code == 400
    assert subscription(tx)[1] == 100 and audit_count(tx) == 0
    assert tx.scalar(select(func.count()).select_from(GracePeriod)) == 0


def test_the_user_id_in_the_address_fills_the_form_and_the_plans_are_the_active_ones(agent):
    page = agent.get(f"{OVERRIDE}?user_id=user-alice").get_data(as_text=True)
    assert 'id="user_id" name="user_id" type="text" value="user-alice"' in page
    assert '<option value="pro">pro</option>' in page and '<option value="team">team</option>' in page
    assert "legacy" not in page
    assert "add to (or, negative, take from) the balance" in page  # the API's own description of the field


@pytest.mark.parametrize(
    "form, field, message",
    [
        ({"user_id": "user-ghost", "credits": "5"}, "user_id", "No customer has the user id &#39;user-ghost&#39;."),
        ({"valid_until": "2020-01-01 00:00"}, "valid_until", "must be in the future"),
        ({"valid_until": "next week"}, "valid_until", "Enter a date and time in UTC, e.g. 2027-01-31 00:00."),
        ({"credits": "5", "credits_delta": "5"}, "credits", "send credits or credits_delta, not both"),
        ({"credits": "100"}, "credits", "nothing would change"),
        ({"credits": "-1"}, "credits", "Must be greater than or equal to 0"),
        ({"credits": "ten"}, "credits", "Enter a whole number, e.g. 500."),
        ({"plan": "legacy"}, "plan", "no active plan has the code &#39;legacy&#39;"),
        ({"credits": "5", "reason": ""}, "reason", "Say why: the reason is kept in the audit log."),
        ({"credits": "5", "reason": "   "}, "reason", "Say why: the reason is kept in the audit log."),
        ({"credits": "5", "reason": "x" * 501}, "reason", "Longer than maximum length 500."),
    ],
)
def test_bad_override_input_is_an_inline_error_and_changes_nothing(agent, tx, form, field, message):
    resp = agent.submit(OVERRIDE, {"user_id": "user-alice", "reason": "customer called", **form})
    assert resp.status_code == 200
    assert message in field_error(resp.get_data(as_text=True), field)
    assert subscription(tx)[:2] == ("pro", 100) and audit_count(tx) == 0


def test_a_balance_below_zero_is_refused_on_the_form(agent, tx):
    resp = agent.submit(OVERRIDE, {"user_id": "user-alice", "credits_delta": "-500", "reason": "refund"})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "credits would go below 0: the balance is 100" in page
    assert 'class="form-errors"' in page and audit_count(tx) == 0


def test_nothing_sent_but_a_reason_is_refused_on_the_form(agent, tx):
    page = agent.submit(OVERRIDE, {"user_id": "user-alice", "reason": "why not"}).get_data(as_text=True)
    assert "send at least one of credits, credits_delta, plan or valid_until" in page and audit_count(tx) == 0


def test_an_override_redirects_to_the_customer_and_says_before_and_after(agent, tx, frozen_clock):
    form = {"user_id": "user-alice", "credits_delta": "500", "plan": "team", "reason": "goodwill"}
    resp = agent.submit(OVERRIDE, form)
    assert resp.status_code == 302 and resp.headers["Location"] == "/admin/customers/user-alice"
    page = agent.get("/admin/customers/user-alice").get_data(as_text=True)
    assert "user-alice: plan: pro → team; credits: 100 → 600." in page
    assert subscription(tx)[:2] == ("team", 600)
    [entry] = tx.scalars(select(AuditEntry).where(AuditEntry.action == "entitlements.override")).all()
    assert entry.reason == "goodwill" and entry.context["channel"] == "console"


def test_an_override_may_start_a_subscription_and_set_an_expiry(agent, tx, frozen_clock):
    CustomerFactory(user_id="user-new")
    form = {"user_id": "user-new", "credits": "50", "valid_until": "2027-01-31 00:00", "reason": "trial"}
    assert agent.submit(OVERRIDE, form).status_code == 302
    page = agent.get("/admin/customers/user-new").get_data(as_text=True)
    assert "user-new: status: none → active; credits: none → 50; valid_until: none → 2027-01-31 00:00 UTC." in page


def test_a_reason_with_html_is_kept_and_shown_as_text(agent, tx):
    agent.submit(OVERRIDE, {"user_id": "user-alice", "credits": "7", "reason": XSS})
    page = agent.get("/admin/customers/user-alice").get_data(as_text=True)
    assert "<script>alert" not in page and "Reason: &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


@pytest.mark.parametrize(
    "form, field, message",
    [
        ({"days": "0"}, "days", "Must be greater than or equal to 1 and less than or equal to 90."),
        ({"days": "91"}, "days", "Must be greater than or equal to 1 and less than or equal to 90."),
        ({"days": "a week"}, "days", "Enter a whole number, e.g. 500."),
        ({"days": ""}, "days", "Enter a number of days, from 1 to 90."),
        ({"reason": ""}, "reason", "Say why: the reason is kept in the audit log."),
        ({"user_id": "user-ghost"}, "user_id", "No customer has the user id"),
    ],
)
def test_bad_grace_input_is_an_inline_error_and_changes_nothing(agent, tx, form, field, message):
    resp = agent.submit(GRACE, {"user_id": "user-alice", "days": "14", "reason": "card replaced", **form})
    assert resp.status_code == 200
    assert message in field_error(resp.get_data(as_text=True), field)
    assert tx.scalar(select(func.count()).select_from(GracePeriod)) == 0 and audit_count(tx) == 0


def test_a_grace_reset_extends_the_period_and_says_before_and_after(agent, tx, frozen_clock):
    GracePeriodFactory(user_id="user-alice", ends_at=frozen_clock.now + timedelta(days=2))
    resp = agent.submit(f"{GRACE}?user_id=user-alice", {"user_id": "user-alice", "days": "14", "reason": "bank delay"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/admin/customers/user-alice"
    page = agent.get("/admin/customers/user-alice").get_data(as_text=True)
    assert "user-alice: grace period ends_at: 2026-11-27 12:00 UTC → 2026-12-09 12:00 UTC; reset_count: 0 → 1." in page
    [entry] = tx.scalars(select(AuditEntry).where(AuditEntry.action == "grace.reset")).all()
    assert entry.reason == "bank delay"


def test_a_second_active_grace_period_is_refused_on_the_form(agent, tx, frozen_clock, monkeypatch):
    """Should a reset ever miss the active grace period (in a race), the form says to try again; nothing changes."""
    GracePeriodFactory(user_id="user-alice", ends_at=frozen_clock.now + timedelta(days=2))
    monkeypatch.setattr(grace, "active_grace_for_update", lambda session, user_id: None)
    resp = agent.submit(GRACE, {"user_id": "user-alice", "days": "14", "reason": "bank delay"})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200 and 'class="form-errors"' in page
    assert "Another change started a grace period for user-alice at the same moment; try again." in page
    assert tx.scalar(select(func.count()).select_from(GracePeriod)) == 1 and audit_count(tx) == 0


def beside_the_form(page: str) -> str:
    """The customer's current state shown beside a change form."""
    match = re.search(r'<aside class="current-state[^"]*"[^>]*>(.*?)</aside>', page, re.S)
    assert match, "no current state beside the form"
    return " ".join(match.group(1).split())


def preview_of(page: str) -> str:
    match = re.search(r'<section class="preview"[^>]*>(.*?)</section>', page, re.S)
    assert match, "no preview on the page"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


@pytest.mark.parametrize("path", [OVERRIDE, GRACE])
def test_a_known_user_id_shows_the_customers_state_beside_the_form(agent, frozen_clock, path):
    GracePeriodFactory(user_id="user-alice", ends_at=frozen_clock.now + timedelta(days=2), reset_count=1)
    state = beside_the_form(agent.get(f"{path}?user_id=user-alice").get_data(as_text=True))
    assert "user-alice now" in state and "<dd>pro</dd>" in state and "<dd>100</dd>" in state
    assert 'badge-active">active' in state and "until <time" in state and "2026-11-27 12:00 UTC" in state
    assert "reset count 1" in state


@pytest.mark.parametrize("path", [OVERRIDE, GRACE])
def test_an_unknown_user_id_is_said_plainly_beside_the_form(agent, path):
    state = beside_the_form(agent.get(f"{path}?user_id=user-ghost").get_data(as_text=True))
    assert "No customer has the user id &#39;user-ghost&#39;." in state


def test_a_form_shown_again_with_errors_keeps_the_state_beside_it(agent, tx):
    page = agent.submit(OVERRIDE, {"user_id": "user-alice", "credits_delta": "5"}).get_data(as_text=True)
    assert "Say why: the reason is kept in the audit log." in field_error(page, "reason")
    assert "<dd>100</dd>" in beside_the_form(page)


def test_an_override_preview_shows_before_and_after_and_changes_nothing(agent, tx):
    form = {"user_id": "user-alice", "credits_delta": "500", "plan": "team", "reason": "goodwill", "action": "preview"}
    resp = agent.submit(OVERRIDE, form)
    assert resp.status_code == 200
    preview = preview_of(resp.get_data(as_text=True))
    assert "Preview: nothing has changed yet" in preview
    assert "plan pro team changes" in preview and "credits 100 600 changes" in preview
    assert "status active active" in preview  # unchanged fields are listed, not marked
    assert subscription(tx)[:2] == ("pro", 100) and audit_count(tx) == 0

    form["action"] = "apply"
    assert agent.submit(OVERRIDE, form).status_code == 302
    assert subscription(tx)[:2] == ("team", 600) and audit_count(tx) == 1


@pytest.mark.parametrize(
    "form, where, message",
    [
        ({"user_id": "user-ghost", "credits": "5"}, "user_id", "No customer has the user id"),
        ({"plan": "legacy"}, "plan", "no active plan has the code"),
        ({"credits": "5", "reason": ""}, "reason", "Say why"),
    ],
)
def test_an_override_preview_refuses_what_apply_refuses(agent, tx, form, where, message):
    resp = agent.submit(OVERRIDE, {"user_id": "user-alice", "reason": "why", "action": "preview", **form})
    page = resp.get_data(as_text=True)
    assert message in field_error(page, where) and 'class="preview"' not in page
    assert subscription(tx)[:2] == ("pro", 100) and audit_count(tx) == 0


def test_a_grace_preview_of_a_longer_period_says_when_it_would_end(agent, tx, frozen_clock):
    GracePeriodFactory(user_id="user-alice", ends_at=frozen_clock.now + timedelta(days=2))
    form = {"user_id": "user-alice", "days": "14", "reason": "bank delay", "action": "preview"}
    preview = preview_of(agent.submit(GRACE, form).get_data(as_text=True))
    assert "Would end 2026-12-09 12:00 UTC (in 14 d), later than its current end." in preview
    assert "ends_at 2026-11-27 12:00 UTC 2026-12-09 12:00 UTC changes" in preview
    assert "reset_count 0 1 changes" in preview
    assert tx.scalar(select(GracePeriod.reset_count)) == 0 and audit_count(tx) == 0


def test_a_grace_preview_says_a_reset_never_shortens_the_period(agent, tx, frozen_clock):
    GracePeriodFactory(user_id="user-alice", ends_at=frozen_clock.now + timedelta(days=30))
    form = {"user_id": "user-alice", "days": "14", "reason": "bank delay", "action": "preview"}
    preview = preview_of(agent.submit(GRACE, form).get_data(as_text=True))
    assert (
        "Would end 2026-12-25 12:00 UTC (in 30 d): the current period already ends later than 14 days from now,"
        " so nothing would shorten it; only the reset count goes up." in preview
    )
    assert tx.scalar(select(GracePeriod.reset_count)) == 0 and audit_count(tx) == 0


def test_a_grace_preview_without_an_active_period_starts_one_and_writes_nothing(agent, tx):
    form = {"user_id": "user-alice", "days": "7", "reason": "card replaced", "action": "preview"}
    preview = preview_of(agent.submit(GRACE, form).get_data(as_text=True))
    assert "a new grace period starts now" in preview and "none active, this reset starts one" in preview
    assert tx.scalar(select(func.count()).select_from(GracePeriod)) == 0 and audit_count(tx) == 0
