"""The pages a signed-in agent reads: what they show, their headers, and that user text stays text."""

import csv
import io
import re
from datetime import timedelta

import pytest

from app.models import EventStatus
from app.services import audit
from app.services.actor import Actor
from app.services.uow import unit_of_work
from tests.factories import BillingEventFactory, CustomerFactory, GracePeriodFactory, SubscriptionFactory

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def record(action="grace.reset", user_id="user-alice", *, who="ops", reason="card expired", now, **changes):
    with unit_of_work() as session:
        return audit.record(
            session,
            Actor.cli(who),
            action,
            user_id,
            changes.get("before"),
            changes.get("after"),
            now=now,
            reason=reason,
        )


def html(resp) -> str:
    assert resp.status_code == 200, resp.status_code
    return resp.get_data(as_text=True)


@pytest.fixture
def viewer(console_as):
    return console_as("viewer")


def test_the_dashboard_shows_counts_and_recent_actions(viewer, tx, frozen_clock):
    BillingEventFactory.create_batch(3, status=EventStatus.FAILED)
    BillingEventFactory(event_id="evt_waiting", status=EventStatus.RECEIVED, type="invoice.paid")
    GracePeriodFactory(user_id="user-bob", ends_at=frozen_clock.now + timedelta(hours=3))
    record("entitlements.override", reason="goodwill credit", now=frozen_clock.now)
    page = html(viewer.get("/admin/"))
    assert re.search(r'Failed events</h2>\s*<p class="figure"><a href="/admin/events\?status=failed">3</a>', page)
    assert "evt_waiting" in page and "invoice.paid" in page
    assert '2026-11-25 15:00 UTC</time> <span class="ago">(in 3 h)</span>' in page
    assert "goodwill credit" in page and 'href="/admin/customers/user-bob"' in page


def test_search_lists_matches_and_opens_a_single_one(viewer, tx):
    CustomerFactory(user_id="user-ann")
    CustomerFactory(user_id="user-anna")
    page = html(viewer.get("/admin/customers?q=user-an"))
    assert page.count('href="/admin/customers/user-ann') == 2
    resp = viewer.get("/admin/customers?q=user-anna@example.com")
    assert resp.status_code == 302 and resp.headers["Location"] == "/admin/customers/user-anna"
    assert "No customer" in html(viewer.get("/admin/customers?q=nobody"))


def test_the_customer_page_shows_the_subscription_and_the_timeline(viewer, tx, frozen_clock):
    SubscriptionFactory(user_id="user-alice", credits=4200, plan="team")
    BillingEventFactory(user_id="user-alice", type="invoice.payment_failed", status=EventStatus.FAILED)
    record(now=frozen_clock.now + timedelta(minutes=1), reason="customer called")
    page = html(viewer.get("/admin/customers/user-alice"))
    assert page.index("Subscription") < page.index("Timeline")
    assert "<dd>4200</dd>" in page and "<dd>team</dd>" in page
    assert page.index("customer called") < page.index("invoice.payment_failed")  # newest first
    assert 'class="badge badge-failed"' in page


def test_a_viewer_sees_no_change_forms(viewer, tx):
    SubscriptionFactory(user_id="user-alice")
    page = html(viewer.get("/admin/customers/user-alice"))
    assert "can read this customer but not change it" in page
    assert "/admin/override" not in page and "/admin/grace-reset" not in page


@pytest.mark.parametrize("role, links", [("viewer", False), ("support", True), ("admin", True)])
def test_support_and_admin_get_the_change_links(console_as, tx, role, links):
    SubscriptionFactory(user_id="user-alice")
    page = html(console_as(role).get("/admin/customers/user-alice"))
    assert ('href="/admin/override?user_id=user-alice"' in page) is links
    assert ('href="/admin/grace-reset?user_id=user-alice"' in page) is links
    assert ('href="/admin/override"' in page) is links  # the navigation too


def test_an_unknown_customer_is_a_404_page_inside_the_console(viewer, tx):
    resp = viewer.get("/admin/customers/user-ghost")
    assert resp.status_code == 404 and resp.mimetype == "text/html"
    page = resp.get_data(as_text=True)
    assert "No customer has the user id &#39;user-ghost&#39;." in page
    assert "Sign out" in page  # still the console's layout


@pytest.fixture
def entries(tx, frozen_clock):
    """Five audit entries a minute apart, after the viewer signed in."""
    made = []
    for i, who in enumerate(["ann", "ben", "ann", "ben", "ann"]):
        made.append(record(who=who, reason=f"step {i}", now=frozen_clock.advance(minutes=1)))
    return made


def test_the_audit_log_filters_like_the_api(viewer, entries):
    page = html(viewer.get("/admin/audit?actor=ben&action=grace.reset"))
    assert "2 entries match." in page
    assert "step 3" in page and "step 1" in page and "step 0" not in page


def test_the_audit_log_takes_times_without_an_offset_as_utc(viewer, entries):
    since = entries[3].created_at.strftime("%Y-%m-%d %H:%M")
    page = html(viewer.get(f"/admin/audit?action=grace.reset&since={since}"))
    assert "2 entries match." in page
    assert 'value="2026-11-25T12:04:00+00:00"' in page  # what it was read as


def test_the_audit_log_pages_with_a_cursor(viewer, entries):
    seen, url = [], "/admin/audit?action=grace.reset&limit=2"
    while url:
        page = html(viewer.get(url))
        seen += re.findall(r"step (\d)", page)
        next_link = re.search(r'<a href="([^"]+)" rel="next">', page)
        url = next_link and next_link.group(1).replace("&amp;", "&")
    assert seen == ["4", "3", "2", "1", "0"]
    assert "limit=2" in page and "action=grace.reset" in page  # the filters travel with the cursor


@pytest.mark.parametrize(
    "query, field, message",
    [
        ("since=yesterday", "since", "Enter a date and time in UTC, e.g. 2027-01-31 00:00."),
        ("limit=500", "limit", "Must be greater than or equal to 1 and less than or equal to 200."),
        ("cursor=forged", None, "cursor: Not a cursor from this list"),
    ],
)
def test_bad_filters_show_inline_errors_and_no_entries(viewer, entries, query, field, message):
    resp = viewer.get(f"/admin/audit?{query}")
    assert resp.status_code == 400
    page = resp.get_data(as_text=True)
    assert message in page and "step" not in page
    if field:
        assert re.search(rf'id="{field}"[^>]*aria-invalid="true"|aria-invalid="true"[^>]*id="{field}"', page)


def test_the_audit_csv_download_is_every_match(viewer, entries):
    page = html(viewer.get("/admin/audit?actor=ann&limit=1"))
    csv_url = re.search(r'<a href="([^"]+)" class="download"', page).group(1).replace("&amp;", "&")
    resp = viewer.get(csv_url)
    assert resp.mimetype == "text/csv" and "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert [row["reason"] for row in rows] == ["step 4", "step 2", "step 0"]


@pytest.mark.parametrize(
    "path",
    [
        "/admin/login",
        "/admin/",
        "/admin/customers/user-alice",
        "/admin/audit",
        "/admin/events",
        "/admin/events/evt_alice",
        "/admin/plans",
        "/admin/override",
        "/admin/grace-reset",
        "/admin/reconcile",
    ],
)
def test_every_page_carries_the_security_headers(console_as, tx, path):
    SubscriptionFactory(user_id="user-alice")
    BillingEventFactory(event_id="evt_alice", user_id="user-alice", type="customer.updated")
    resp = console_as("support").get(path)
    assert resp.status_code == 200
    assert_secure_headers(resp)


@pytest.mark.parametrize(
    "request_page, status",
    [
        (lambda browser: browser.get("/admin/customers/user-nobody"), 404),
        (lambda browser: browser.get("/admin/nothing-here"), 404),
        (lambda browser: browser.submit("/admin/plans/sync", form_page="/admin/plans"), 403),
        (lambda browser: browser.submit("/admin/override", csrf=False), 400),
        (lambda browser: browser.get("/admin/reconcile?limit=0"), 400),
        (lambda browser: browser.client.put("/admin/reconcile"), 405),
    ],
)
def test_error_pages_carry_the_security_headers_too(console_as, tx, request_page, status):
    resp = request_page(console_as("support"))
    assert resp.status_code == status
    assert_secure_headers(resp)


def assert_secure_headers(resp) -> None:
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "same-origin"
    assert resp.headers["Cache-Control"] == "no-store"
    page = resp.get_data(as_text=True)
    assert "<script" not in page and " style=" not in page and "<style" not in page


def test_user_text_is_shown_as_text_never_run(viewer, tx, frozen_clock):
    SubscriptionFactory(user_id="user-alice")
    BillingEventFactory(user_id="user-alice", status=EventStatus.FAILED, last_error=XSS, payload={"note": XSS})
    GracePeriodFactory(user_id="user-alice", reason=XSS)
    record(who=XSS, reason=XSS, after={"plan": XSS}, now=frozen_clock.now + timedelta(minutes=1))
    for path in ["/admin/customers/user-alice", "/admin/audit", "/admin/"]:
        page = html(viewer.get(path))
        assert "<script>" not in page and "<img src=x" not in page, path
        assert "&lt;script&gt;alert(" in page, path
    search = html(viewer.get("/admin/customers", query_string={"q": XSS}))
    assert "<script>" not in search and "&lt;script&gt;" in search


@pytest.mark.parametrize(
    "role, change_pages",
    [("viewer", []), ("support", ["Override", "Grace reset"]), ("admin", ["Override", "Grace reset"])],
)
def test_the_navigation_lists_the_pages_the_role_may_use(console_as, tx, role, change_pages):
    page = html(console_as(role).get("/admin/"))
    nav = page[page.index('aria-label="Console"') : page.index("</nav>")]
    labels = re.findall(r'<li><a href="/admin/[^"]*"(?: aria-current="page")?>([^<]+)</a></li>', nav)
    assert labels == ["Dashboard", "Events", "Customers", *change_pages, "Plans", "Reconcile", "Audit log"]
