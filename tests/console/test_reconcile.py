"""The reconcile page: the API's preview with filters and signed pages; admins apply after a confirmation."""

import re

import pytest
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from app.models import AuditEntry, Subscription, SubscriptionStatus
from tests.factories import SubscriptionFactory

RECONCILE = "/admin/reconcile"
NO_EVIDENCE = "no evidence: unknown state defaults to unpaid"


@pytest.fixture(autouse=True)
def unexplained(tx):
    """Three active subscriptions no event or audited change explains: each is expected to be unpaid."""
    for user_id in ("user-a", "user-b", "user-c"):
        SubscriptionFactory(user_id=user_id, status=SubscriptionStatus.ACTIVE)


def statuses(tx) -> dict[str, str]:
    tx.expire_all()
    return {row.user_id: row.status.value for row in tx.scalars(select(Subscription).order_by(Subscription.user_id))}


def fixes(tx) -> list[tuple[str, str]]:
    stmt = select(AuditEntry.user_id, AuditEntry.reason).where(AuditEntry.action == "reconcile.apply")
    return [tuple(row) for row in tx.execute(stmt.order_by(AuditEntry.id))]


def confirm(browser, page: str, **extra):
    """Press Confirm on a confirmation page, sending what it carries (and `extra` typed fields)."""
    carried = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    return browser.client.post(RECONCILE, data=MultiDict([*carried, ("csrf_token", token), *extra.items()]))


@pytest.mark.parametrize("role", ["viewer", "support", "admin"])
def test_every_role_sees_the_mismatches_with_their_fixes_and_why(console_as, role):
    page = console_as(role).get(RECONCILE).get_data(as_text=True)
    assert "3 customers checked, 3 mismatches on this page." in page
    row = re.search(r'<a href="/admin/customers/user-a">user-a</a></td>(.*?)</tr>', page, re.S).group(1)
    cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    assert cells == ["status", "active", "unpaid", "set status unpaid", NO_EVIDENCE]


@pytest.mark.parametrize("role, controls", [("viewer", False), ("support", False), ("admin", True)])
def test_only_an_admin_gets_checkboxes_and_apply_buttons(console_as, role, controls):
    page = console_as(role).get(RECONCILE).get_data(as_text=True)
    assert ('type="checkbox"' in page) is controls
    assert ("Apply selected" in page) is controls and ("Apply all" in page) is controls


def test_the_filters_and_pages_are_the_apis(console_as):
    viewer = console_as("viewer")
    assert "user-b" not in viewer.get(f"{RECONCILE}?user_id=user-a").get_data(as_text=True)
    assert "0 mismatches" in viewer.get(f"{RECONCILE}?kind=plan").get_data(as_text=True)
    first = viewer.get(f"{RECONCILE}?limit=1").get_data(as_text=True)
    next_url = re.search(r'href="(/admin/reconcile\?limit=1&amp;cursor=[^"]+)"', first).group(1).replace("&amp;", "&")
    api_cursor = viewer.get(next_url).request.args["cursor"]
    second = viewer.get(next_url).get_data(as_text=True)
    assert "/admin/customers/user-b" in second and "/admin/customers/user-a" not in second
    assert api_cursor  # the API's own cursor: signed for the "reconcile" list


@pytest.mark.parametrize(
    "query, message",
    [
        ("limit=0", "Must be greater than or equal to 1"),
        ("kind=everything", "Must be one of"),
        ("cursor=forged", "cursor: Not a cursor from this list"),
        ("source=provider", "needs PLANS_PROVIDER=stripe"),
    ],
)
def test_bad_filters_show_the_error_and_list_nothing(console_as, query, message):
    resp = console_as("viewer").get(f"{RECONCILE}?{query}")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 400 and message in page and "checked" not in page


@pytest.mark.parametrize("role", ["viewer", "support"])
def test_applying_is_for_admins_only(console_as, tx, role):
    resp = console_as(role).submit(RECONCILE, {"scope": "all", "confirmed": "yes", "reason": "x"}, form_page="/admin/")
    assert resp.status_code == 403 and fixes(tx) == []


def test_applying_without_csrf_is_refused(console_as, tx):
    resp = console_as("admin").submit(RECONCILE, {"scope": "all"}, csrf=False)
    assert resp.status_code == 400 and fixes(tx) == []


def test_apply_selected_lists_exactly_the_fixes_then_needs_a_reason_then_applies_them(console_as, tx):
    admin = console_as("admin")
    page = admin.submit(RECONCILE, MultiDict([("scope", "selected"), ("selected", "user-b")])).get_data(as_text=True)
    assert "Apply 1 fix to 1 customer" in page and "Nothing has changed yet" in page
    assert f"<li>user-b: status: active → unpaid ({NO_EVIDENCE})</li>" in page and "user-a:" not in page
    assert re.findall(r'name="user_ids" value="([^"]+)"', page) == ["user-b"]
    assert fixes(tx) == []

    missing = confirm(admin, page)
    assert missing.status_code == 200
    assert re.search(r'id="reason-error" class="field-error">Say why', missing.get_data(as_text=True))
    assert fixes(tx) == [] and statuses(tx)["user-b"] == "active"

    resp = confirm(admin, missing.get_data(as_text=True), reason="ticket 12: rows edited by hand")
    assert resp.status_code == 302 and resp.headers["Location"] == RECONCILE
    assert "Fixed 1 mismatch: user-b: status: active → unpaid." in admin.get(RECONCILE).get_data(as_text=True)
    assert statuses(tx) == {"user-a": "active", "user-b": "unpaid", "user-c": "active"}
    assert fixes(tx) == [
        ("user-b", f"ticket 12: rows edited by hand — status: expected unpaid, found active ({NO_EVIDENCE})")
    ]


def test_apply_all_fixes_the_customers_it_listed_and_no_later_one(console_as, tx):
    admin = console_as("admin")
    page = admin.submit(RECONCILE, {"scope": "all"}).get_data(as_text=True)
    assert "Apply 3 fixes to 3 customers" in page
    SubscriptionFactory(user_id="user-d", status=SubscriptionStatus.ACTIVE)  # arrives while the admin reads
    resp = confirm(admin, page, reason="cleanup")
    assert resp.status_code == 302
    assert statuses(tx) == {"user-a": "unpaid", "user-b": "unpaid", "user-c": "unpaid", "user-d": "active"}
    assert [user_id for user_id, _ in fixes(tx)] == ["user-a", "user-b", "user-c"]


@pytest.mark.parametrize(
    "form, message",
    [
        ({"scope": "selected"}, "Select the customers to fix, or apply all."),
        ({"scope": "all", "kind": "plan"}, "Nothing to fix for these customers"),
        ({"scope": "all", "confirmed": "yes", "reason": "x"}, "user_ids: Length must be between 1 and 1000."),
        ({"scope": "all", "confirmed": "yes", "reason": "x", "user_ids": "user-ghost"}, "No customer has the user id"),
    ],
)
def test_an_apply_that_cannot_run_says_why_and_changes_nothing(console_as, tx, form, message):
    admin = console_as("admin")
    resp = admin.submit(RECONCILE, form)
    assert resp.status_code == 302
    page = admin.get(resp.headers["Location"]).get_data(as_text=True).replace("&#39;", "'")
    assert message in page, re.findall(r"flash[^>]*>([^<]*)", page)
    assert fixes(tx) == [] and set(statuses(tx).values()) == {"active"}
