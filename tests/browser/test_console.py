"""The console in a real browser: sign in, find a customer, read the audit log, download it, sign out.

The server runs on a database of its own (real commits), loaded with the demo data and a few support actions.
"""

from __future__ import annotations

import csv
import io
import re
from itertools import pairwise
from typing import NamedTuple

import flask_migrate
import pytest
from flask import Flask
from playwright.sync_api import expect
from sqlalchemy import update

from app import clock
from app.models.keys import Role
from app.models.subscriptions import Subscription, SubscriptionStatus
from app.services import audit, demo, keys
from app.services.actor import Actor
from app.services.uow import unit_of_work
from tests.browser.conftest import screenshot, serve
from tests.browser.test_pages import PageLog
from tests.conftest import build_app, fresh_database

pytestmark = pytest.mark.browser
SUPPORT_ACTIONS = [
    ("user-alice", "entitlements.override", {"credits": 8200}, {"credits": 9200}, "Goodwill: outage on 2026-11-27"),
    ("user-bob", "grace.reset", {"days": 5}, {"days": 14}, "Card replaced, bank transfer pending"),
    ("user-alice", "entitlements.override", {"plan": "starter"}, {"plan": "pro"}, '<script>alert("x")</script>'),
]


class Site(NamedTuple):
    base: str
    support_key: str
    admin_key: str
    app: Flask


@pytest.fixture(scope="module")
def console_site(test_env, tmp_path_factory):
    """The console on a migrated database with the demo data, and a support and an admin key."""
    with fresh_database(test_env, tmp_path_factory.mktemp("console"), "console") as url:
        app = build_app({**test_env, "TEST_DATABASE_URL": url}, WTF_CSRF_ENABLED=True)
        with app.app_context():
            flask_migrate.upgrade()
            secrets = _load(app)
        try:
            with serve(app) as base:
                yield Site(base, *secrets, app)
        finally:
            with app.app_context():
                app.extensions["sqlalchemy"].engine.dispose()


def _load(app) -> tuple[str, str]:
    operator = Actor.cli("ops-lead")
    demo.load_demo_data(app.config["PLANS_CATALOG"], actor=operator, now=clock.utcnow())
    for user_id, action, before, after, reason in SUPPORT_ACTIONS:
        with unit_of_work() as session:
            agent = Actor.cli("agent-sam")
            audit.record(session, agent, action, user_id, before, after, now=clock.utcnow(), reason=reason)
    support = keys.create_key("agent-sam", Role.SUPPORT, actor=operator, now=clock.utcnow()).secret
    return support, keys.create_key("admin-ada", Role.ADMIN, actor=operator, now=clock.utcnow()).secret


def sign_in(page, base: str, secret: str) -> None:
    page.goto(f"{base}/")
    expect(page).to_have_url(re.compile(r"/admin/login\?next="))
    page.get_by_label("Admin key").fill(secret)
    page.get_by_role("button", name="Sign in").click()


def test_an_agent_signs_in_finds_a_customer_and_reads_the_timeline(page, console_site):
    base, secret = console_site.base, console_site.support_key
    log = PageLog(page)

    page.goto(f"{base}/")
    expect(page).to_have_url(f"{base}/admin/login?next=/admin/")
    screenshot(page, "login")
    page.get_by_label("Admin key").fill("bok_a-wrong-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#admin_key-error")).to_contain_text("not known")
    expect(page.get_by_label("Admin key")).to_have_attribute("aria-invalid", "true")

    page.get_by_label("Admin key").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/admin/")
    expect(page.get_by_role("status")).to_have_text("Signed in as agent-sam (support).")
    expect(page.locator(".card", has_text="Active grace periods").locator(".figure")).to_have_text("1")
    expect(page.get_by_role("cell", name="Goodwill: outage on 2026-11-27")).to_be_visible()
    screenshot(page, "dashboard")

    page.get_by_role("navigation", name="Console").get_by_role("link", name="Customers").click()
    page.get_by_label("User id, email or Stripe customer id").fill("user-")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("tbody tr")).to_have_count(len(demo.DEMO_CUSTOMERS))
    screenshot(page, "customers")

    page.get_by_label("User id, email or Stripe customer id").fill("ALICE@example.com")
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(f"{base}/admin/customers/user-alice")
    expect(page.get_by_role("heading", level=1)).to_have_text("user-alice")
    expect(page.locator(".subscription")).to_contain_text("8200")
    timeline = page.locator(".timeline > li")
    expect(timeline.first).to_contain_text('<script>alert("x")</script>')  # newest first, shown as text
    expect(timeline.nth(1)).to_contain_text("Goodwill: outage on 2026-11-27")
    screenshot(page, "customer")

    assert page.evaluate("window.__cspViolations") == []
    assert not log.page_errors and [e for e in log.console_errors if "401" not in e] == []


def test_the_audit_log_filters_pages_and_downloads(page, console_site):
    base, secret = console_site.base, console_site.support_key
    sign_in(page, base, secret)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Audit log").click()
    expect(page.locator("table.audit tbody tr").first).to_be_visible()
    screenshot(page, "audit")
    page.get_by_label("Actor").fill("agent-sam")
    page.get_by_label("Action").fill("entitlements.override")
    page.get_by_label("Per page").fill("1")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("2 entries match.")).to_be_visible()
    expect(page.locator("table.audit tbody tr")).to_have_count(1)

    page.get_by_role("link", name="Older entries").click()
    expect(page.locator("table.audit tbody tr")).to_have_count(1)
    expect(page.get_by_role("cell", name="Goodwill: outage on 2026-11-27")).to_be_visible()

    page.get_by_label("Since (UTC)").fill("last tuesday")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#since-error")).to_have_text("Enter a date and time in UTC, e.g. 2027-01-31 00:00.")

    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Action").fill("grace.reset")
    page.get_by_role("button", name="Filter").click()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text(encoding="utf-8"))))
    assert [(row["actor"], row["user_id"], row["reason"]) for row in rows] == [
        ("agent-sam", "user-bob", "Card replaced, bank transfer pending")
    ]


def test_an_agent_grants_credits_after_an_inline_error(page, console_site):
    base = console_site.base
    sign_in(page, base, console_site.support_key)
    page.goto(f"{base}/admin/customers/user-alice")
    page.get_by_role("button", name="Override credits, plan or expiry").click()
    expect(page.get_by_label("User id")).to_have_value("user-alice")
    page.get_by_label("Credits delta").fill("1000")
    page.get_by_role("button", name="Apply override").click()
    expect(page.locator("#reason-error")).to_have_text("Say why: the reason is kept in the audit log.")
    expect(page.get_by_label("Reason")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "override")

    page.get_by_label("Reason").fill("Goodwill: second outage this month")
    page.get_by_role("button", name="Preview").click()
    preview = page.get_by_role("status").filter(has_text="Preview: nothing has changed yet")
    expect(preview.get_by_role("row", name="credits")).to_contain_text("8200")
    expect(preview.get_by_role("row", name="credits")).to_contain_text("9200")
    expect(page.locator(".current-state")).to_contain_text("8200")  # nothing was applied
    screenshot(page, "override-preview")
    page.get_by_role("button", name="Apply override").click()
    expect(page).to_have_url(f"{base}/admin/customers/user-alice")
    expect(page.get_by_role("status")).to_have_text("user-alice: credits: 8200 → 9200.")
    expect(page.locator(".subscription")).to_contain_text("9200")
    expect(page.locator(".timeline > li").first).to_contain_text("Goodwill: second outage this month")


def test_an_agent_resets_a_grace_period(page, console_site):
    base = console_site.base
    sign_in(page, base, console_site.support_key)
    page.goto(f"{base}/admin/customers/user-bob")
    page.get_by_role("button", name="Reset grace period").click()
    expect(page.locator(".current-state")).to_contain_text("user-bob now")
    page.get_by_label("Days").fill("14")
    page.get_by_label("Reason").fill("Card replaced, bank transfer pending")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".preview-summary")).to_contain_text("Would end")
    expect(page.get_by_label("Days")).to_have_value("14")
    screenshot(page, "grace-reset")
    page.get_by_role("button", name="Reset grace period").click()
    expect(page).to_have_url(f"{base}/admin/customers/user-bob")
    expect(page.get_by_role("status")).to_contain_text("user-bob: grace period ends_at:")
    expect(page.locator(".timeline > li").first).to_contain_text("grace.reset")


def test_an_admin_filters_events_opens_one_and_replays_it(page, console_site):
    base = console_site.base
    sign_in(page, base, console_site.admin_key)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Events").click()
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=failed"))
    rows = page.locator("table.events tbody tr")
    expect(rows.first).to_be_visible()
    expect(page.locator("table.events .badge-processed")).to_have_count(0)
    screenshot(page, "events")

    page.get_by_role("button", name="Replay these events…").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Replay")
    expect(page.get_by_text("Nothing has changed yet.")).to_be_visible()
    screenshot(page, "replay-confirm")
    page.get_by_role("link", name="Cancel").click()

    event_id = rows.first.locator("td").first.inner_text()
    rows.first.get_by_role("link").first.click()
    expect(page).to_have_url(f"{base}/admin/events/{event_id}")
    expect(page.locator("pre.json")).to_contain_text(event_id)
    screenshot(page, "event")
    page.get_by_role("button", name="Replay this event").click()
    expect(page.locator("#reason-error")).to_have_text("Say why: the reason is kept in the audit log.")
    page.get_by_label("Reason").fill("Handler fixed in the last release")
    page.get_by_role("button", name="Replay this event").click()
    expect(page).to_have_url(f"{base}/admin/events/{event_id}")
    expect(page.get_by_role("status")).to_contain_text(f"Replayed 1 event: {event_id}")
    expect(page.locator("table.attempts tbody tr").last).to_contain_text("replay")


def test_an_admin_syncs_plans_after_reading_the_diff(page, console_site):
    base = console_site.base
    sign_in(page, base, console_site.admin_key)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Plans").click()
    expect(page.locator("table.plans tbody tr")).to_have_count(5)
    screenshot(page, "plans")
    page.get_by_role("button", name="Sync from provider…").click()
    expect(page.get_by_text("Nothing has changed yet.")).to_be_visible()
    expect(page.locator(".confirm li")).to_contain_text(["leave 5 unchanged"])
    page.get_by_label("Reason").fill("Weekly catalog check")
    screenshot(page, "plans-sync")
    page.get_by_role("button", name="Confirm").click()
    expect(page).to_have_url(f"{base}/admin/plans")
    expect(page.get_by_role("status")).to_contain_text("Plans synced: leave 5 unchanged")


def test_an_admin_applies_a_reconcile_fix_after_the_confirmation(page, console_site):
    """A subscription edited behind the application's back is found, confirmed with a reason, and fixed."""
    with console_site.app.app_context(), unit_of_work() as session:
        edit = update(Subscription).where(Subscription.user_id == "user-alice")
        session.execute(edit.values(status=SubscriptionStatus.CANCELED))
    base = console_site.base
    sign_in(page, base, console_site.admin_key)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Reconcile").click()
    expect(page.locator("table.reconcile")).to_contain_text("user-alice")
    screenshot(page, "reconcile")
    page.get_by_label("User id").fill("user-alice")
    page.get_by_role("button", name="Check").click()
    page.get_by_label(re.compile(r"Select user-alice")).check()
    page.get_by_role("button", name="Apply selected…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Apply 1 fix to 1 customer")
    expect(page.locator(".confirm li")).to_have_text([re.compile(r"^user-alice: status: canceled → active ")])
    page.get_by_label("Reason").fill("Row edited by hand during the migration")
    screenshot(page, "reconcile-confirm")
    page.get_by_role("button", name="Confirm").click()
    expect(page).to_have_url(f"{base}/admin/reconcile?user_id=user-alice")
    expect(page.get_by_role("status")).to_have_text("Fixed 1 mismatch: user-alice: status: canceled → active.")
    expect(page.get_by_text("No mismatches")).to_be_visible()


def test_signing_out_closes_the_console(page, console_site):
    base, secret = console_site.base, console_site.support_key
    sign_in(page, base, secret)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{base}/admin/login")
    expect(page.get_by_role("status")).to_have_text("Signed out.")
    page.goto(f"{base}/admin/customers/user-alice")
    expect(page).to_have_url(re.compile(r"/admin/login\?next="))
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


FOCUSED = """() => {
  const e = document.activeElement, box = e.getBoundingClientRect();
  const name = e.labels && e.labels.length ? e.labels[0].innerText : e.innerText || e.value || "";
  return {name: name.trim(), id: e.id, x: box.left + window.scrollX, y: box.top + window.scrollY};
}"""


def tab_through(page, count: int) -> list[dict]:
    """Press Tab `count` times; what got the focus each time (its label or text, and where it is on the page)."""
    stops = []
    for _ in range(count):
        page.keyboard.press("Tab")
        stops.append(page.evaluate(FOCUSED))
    return stops


def assert_reads_in_order(stops: list[dict]) -> None:
    """Each stop is right of the previous one on the same row, or below it: the visual reading order."""
    for before, after in pairwise(stops):
        same_row = abs(after["y"] - before["y"]) < 8
        assert (same_row and after["x"] > before["x"]) or after["y"] > before["y"] + 8, (before, after)


def assert_every_field_is_labelled(page, form) -> None:
    """Each input of `form` is found by its visible label (its accessible name), and only it."""
    fields = form.locator("input:not([type=hidden]), select, textarea")
    assert fields.count() > 0
    for index in range(fields.count()):
        field_id = fields.nth(index).get_attribute("id")
        label = page.locator(f'label[for="{field_id}"]').inner_text().strip()
        expect(page.get_by_label(label, exact=True)).to_have_attribute("id", field_id)


def skip_to_content(page) -> None:
    """The first Tab stop is the skip link; following it puts the next Tab inside the page's content."""
    page.locator("body").press("Tab")  # from the start of the document
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")


def test_the_login_form_is_labelled_and_tabs_in_visual_order(page, console_site):
    page.goto(f"{console_site.base}/admin/login")
    assert_every_field_is_labelled(page, page.locator("main form"))
    stops = [page.evaluate(FOCUSED), *tab_through(page, 1)]  # the key field has the focus on arrival
    assert [stop["name"] for stop in stops] == ["Admin key", "Sign in"]
    assert_reads_in_order(stops)
    before = []
    for _ in range(4):  # back from the button: the field, the navigation, and first of all the skip link
        page.keyboard.press("Shift+Tab")
        before.append(page.evaluate(FOCUSED)["name"])
    assert before == ["Admin key", "API docs", "billops", "Skip to content"]


def test_the_override_form_is_labelled_and_tabs_in_visual_order(page, console_site):
    sign_in(page, console_site.base, console_site.support_key)
    page.goto(f"{console_site.base}/admin/override?user_id=user-alice")
    assert_every_field_is_labelled(page, page.locator("form.change-form"))
    skip_to_content(page)
    stops = tab_through(page, 9)
    assert [stop["name"] for stop in stops] == [
        "User id",
        "Credits",
        "Credits delta",
        "Plan",
        "Valid until (UTC)",
        "Reason",
        "Preview",
        "Apply override",
        "Back to user-alice",
    ]
    assert_reads_in_order(stops)
    assert tab_through(page, 1)[0]["name"] == "Open user-alice's page"  # then the state beside the form
