"""GET /reconcile previews, POST /reconcile applies: hand-edited rows found, fixed once, audited."""

from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, update

from app.models import AuditEntry, Subscription
from app.services import reconcile
from tests.factories import PlanFactory, SubscriptionFactory
from tests.webhooks import PRICE, deliver, event, invoice, subscribe, subscription

URL = "/v1/admin/billing/reconcile"


@pytest.fixture
def client(webhook_app, tx):
    return webhook_app.test_client()


@pytest.fixture
def plans(tx):
    PlanFactory(code="starter-test", provider_price_id=PRICE)
    PlanFactory(code="team-test")


def payment_failed(client, frozen_clock, user_id):
    document = event(
        "invoice.payment_failed",
        invoice(customer=f"cus_{user_id}", subscription=f"sub_{user_id}"),
        event_id=f"evt_{user_id}_failed",
        created=frozen_clock.now - timedelta(minutes=30),
    )
    assert deliver(client, document, now=frozen_clock.now).get_json()["status"] == "processed"


def hand_edit(tx, user_id, **values):
    """Change the row behind the application's back, as a bad migration or a manual UPDATE would."""
    tx.execute(update(Subscription).where(Subscription.user_id == user_id).values(**values))
    tx.commit()


def audit_count(tx, action=None):
    stmt = select(func.count()).select_from(AuditEntry)
    return tx.scalar(stmt.where(AuditEntry.action == action) if action else stmt)


def stored(tx, user_id):
    tx.expire_all()
    row = tx.scalar(select(Subscription).where(Subscription.user_id == user_id))
    return None if row is None else (row.plan, row.status, row.valid_until)


@pytest.fixture
def edited(client, tx, plans, frozen_clock):
    """Three customers whose events were processed; two of their rows were then edited by hand."""
    ends = {user_id: subscribe(client, frozen_clock, user_id) for user_id in ("user-a", "user-b", "user-c")}
    payment_failed(client, frozen_clock, "user-a")  # past_due now
    hand_edit(tx, "user-a", status="active")
    hand_edit(tx, "user-b", plan="team-test", valid_until=ends["user-b"] + timedelta(days=365))
    return ends


def expected_mismatches(ends):
    return [
        {
            "user_id": "user-a",
            "kind": "status",
            "expected": "past_due",
            "actual": "active",
            "fix": {"status": "past_due"},
            "why": "invoice.payment_failed evt_user-a_failed",
        },
        {
            "user_id": "user-b",
            "kind": "plan",
            "expected": "starter-test",
            "actual": "team-test",
            "fix": {"plan": "starter-test"},
            "why": "customer.subscription.created evt_user-b_created",
        },
        {
            "user_id": "user-b",
            "kind": "valid_until",
            "expected": ends["user-b"].isoformat(),
            "actual": (ends["user-b"] + timedelta(days=365)).isoformat(),
            "fix": {"valid_until": ends["user-b"].isoformat()},
            "why": "customer.subscription.created evt_user-b_created",
        },
    ]


def test_the_preview_finds_hand_edited_rows_and_changes_nothing(api, tx, edited):
    viewer = api("viewer")  # its key's creation is audited
    audits, rows = audit_count(tx), [stored(tx, user) for user in ("user-a", "user-b", "user-c")]
    resp = viewer.get(URL)
    assert resp.status_code == 200
    assert resp.get_json() == {"checked": 3, "mismatches": expected_mismatches(edited), "next_cursor": None}
    assert audit_count(tx) == audits
    assert [stored(tx, user) for user in ("user-a", "user-b", "user-c")] == rows


def test_apply_fixes_each_mismatch_with_an_audit_row_and_a_second_run_finds_nothing(api, tx, edited, frozen_clock):
    admin = api("admin")
    resp = admin.post(URL, json={"apply": True})
    assert resp.status_code == 200
    assert resp.get_json() == {"checked": 3, "mismatches": expected_mismatches(edited), "fixed": 3}
    assert stored(tx, "user-a")[1] == "past_due"
    assert stored(tx, "user-b")[0::2] == ("starter-test", edited["user-b"])
    entries = tx.scalars(select(AuditEntry).where(AuditEntry.action == "reconcile.apply").order_by(AuditEntry.id)).all()
    assert [(entry.user_id, entry.context["channel"]) for entry in entries] == [
        ("user-a", "api"),
        ("user-b", "api"),
        ("user-b", "api"),
    ]
    assert (entries[0].before["status"], entries[0].after["status"]) == ("active", "past_due")
    assert entries[0].reason == "status: expected past_due, found active (invoice.payment_failed evt_user-a_failed)"
    assert entries[2].after == {
        "plan": "starter-test",
        "status": "active",
        "valid_until": edited["user-b"].isoformat(),
        "provider_subscription_id": "sub_user-b",
    }
    assert admin.get(URL).get_json()["mismatches"] == []
    assert admin.post(URL, json={"apply": True}).get_json() == {"checked": 3, "mismatches": [], "fixed": 0}


def test_the_reason_of_an_apply_comes_before_the_mismatch_in_each_audit_row(api, tx, edited):
    body = {"apply": True, "user_ids": ["user-a"], "reason": "ticket 4711: manual UPDATE"}
    assert api("admin").post(URL, json=body).status_code == 200
    [entry] = tx.scalars(select(AuditEntry).where(AuditEntry.action == "reconcile.apply")).all()
    assert entry.reason == (
        "ticket 4711: manual UPDATE — "
        "status: expected past_due, found active (invoice.payment_failed evt_user-a_failed)"
    )


def test_apply_to_chosen_users_leaves_the_others(api, tx, edited):
    resp = api("admin").post(URL, json={"apply": True, "user_ids": ["user-a"]})
    assert resp.get_json()["fixed"] == 1 and resp.get_json()["checked"] == 1
    assert stored(tx, "user-a")[1] == "past_due" and stored(tx, "user-b")[0] == "team-test"


def test_an_override_made_after_the_events_is_kept(api, tx, plans, client, frozen_clock):
    subscribe(client, frozen_clock, "user-a")
    frozen_clock.advance(minutes=1)
    override = {"user_id": "user-a", "plan": "team-test", "valid_until": "2030-12-31T23:59:59Z", "reason": "deal"}
    assert api("support").post("/v1/admin/billing/entitlements/override", json=override).status_code == 200
    assert api("viewer").get(URL).get_json()["mismatches"] == []


def test_a_stale_ignored_event_is_no_evidence(api, tx, plans, client, frozen_clock):
    subscribe(client, frozen_clock, "user-a")
    obj = subscription(
        sub_id="sub_user-a",
        customer="cus_user-a",
        user_id="user-a",
        status="canceled",
        price=PRICE,
        period_end=frozen_clock.now,
    )
    older = event(
        "customer.subscription.updated", obj, event_id="evt_old", created=frozen_clock.now - timedelta(days=1)
    )
    assert deliver(client, older, now=frozen_clock.now).get_json()["status"] == "ignored"
    assert api("viewer").get(URL).get_json()["mismatches"] == []


def test_an_invoice_of_another_subscription_is_no_evidence(api, tx, plans, client, frozen_clock):
    """The handler ignores it, so reconcile expects nothing from it either: the two agree on the stored state."""
    subscribe(client, frozen_clock, "user-a")
    other = invoice(customer="cus_user-a", subscription="sub_user-a-replaced")
    late = event("invoice.payment_failed", other, event_id="evt_late", created=frozen_clock.now)
    assert deliver(client, late, now=frozen_clock.now).get_json()["status"] == "ignored"
    assert stored(tx, "user-a")[1] == "active"
    assert api("viewer").get(URL).get_json()["mismatches"] == []


def test_a_row_without_evidence_is_unpaid_and_a_deleted_row_is_missing(api, tx, plans, client, frozen_clock):
    ends = subscribe(client, frozen_clock, "user-a")
    tx.execute(delete(Subscription).where(Subscription.user_id == "user-a"))
    tx.commit()
    SubscriptionFactory(user_id="user-z", status="active")  # written without event or audit: state unknown
    body = api("viewer").get(URL).get_json()
    missing = {
        "plan": "starter-test",
        "status": "active",
        "valid_until": ends.isoformat(),
        "provider_subscription_id": "sub_user-a",
    }
    assert body["mismatches"] == [
        {
            "user_id": "user-a",
            "kind": "missing_subscription",
            "expected": missing,
            "actual": None,
            "fix": missing,
            "why": body["mismatches"][0]["why"],
        },
        {
            "user_id": "user-z",
            "kind": "status",
            "expected": "unpaid",
            "actual": "active",
            "fix": {"status": "unpaid"},
            "why": "no evidence: unknown state defaults to unpaid",
        },
    ]
    assert api("admin").post(URL, json={"apply": True}).get_json()["fixed"] == 2
    assert stored(tx, "user-a") == ("starter-test", "active", ends) and stored(tx, "user-z")[1] == "unpaid"
    assert api("viewer").get(URL).get_json()["mismatches"] == []


def test_filters_by_user_and_kind(api, edited):
    viewer = api("viewer")
    by_user = viewer.get(URL, query_string={"user_id": "user-b"}).get_json()
    assert (by_user["checked"], [m["kind"] for m in by_user["mismatches"]]) == (1, ["plan", "valid_until"])
    by_kind = viewer.get(URL, query_string={"kind": "status"}).get_json()
    assert [(m["user_id"], m["kind"]) for m in by_kind["mismatches"]] == [("user-a", "status")]
    assert viewer.get(URL, query_string={"user_id": "user-nobody"}).get_json() == {
        "checked": 0,
        "mismatches": [],
        "next_cursor": None,
    }


def all_pages(viewer, **query):
    seen, cursor = [], None
    while True:
        page = viewer.get(URL, query_string={**query, **({"cursor": cursor} if cursor else {})}).get_json()
        seen += [(m["user_id"], m["kind"]) for m in page["mismatches"]]
        if (cursor := page["next_cursor"]) is None:
            return seen


@pytest.mark.parametrize("limit", [1, 2])
def test_cursor_pages_return_every_mismatch_exactly_once(api, edited, limit):
    everything = [(m["user_id"], m["kind"]) for m in expected_mismatches(edited)]
    assert all_pages(api("viewer"), limit=limit) == everything


def test_a_page_stops_at_its_scan_budget_and_resumes(api, edited, monkeypatch):
    monkeypatch.setitem(reconcile.SCAN_BUDGET, "events", 1)
    viewer = api("viewer")
    first = viewer.get(URL).get_json()
    assert (first["checked"], [m["user_id"] for m in first["mismatches"]]) == (1, ["user-a"])
    assert first["next_cursor"] is not None
    assert all_pages(viewer) == [(m["user_id"], m["kind"]) for m in expected_mismatches(edited)]


@pytest.mark.parametrize(
    "role, get_status, post_status", [("viewer", 200, 403), ("support", 200, 403), ("admin", 200, 200)]
)
def test_role_gates(api, tx, edited, role, get_status, post_status):
    client = api(role)
    assert client.get(URL).status_code == get_status
    resp = client.post(URL, json={"apply": True})
    assert resp.status_code == post_status
    assert audit_count(tx, "reconcile.apply") == (3 if post_status == 200 else 0)
    if post_status == 403:
        assert resp.get_json()["code"] == "forbidden"


@pytest.mark.parametrize(
    "query, field",
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"kind": "colour"}, "kind"),
        ({"source": "provider"}, "source"),
        ({"source": "ledger"}, "source"),
        ({"cursor": "forged"}, "cursor"),
        ({"user_id": "u" * 65}, "user_id"),
    ],
)
def test_bad_parameters_are_400(api, query, field):
    resp = api("viewer").get(URL, query_string=query)
    assert resp.status_code == 400
    assert resp.get_json()["code"] == "invalid_parameters" and field in resp.get_json()["errors"]


def test_a_cursor_of_another_list_is_refused(api, edited):
    events_cursor = api("viewer").get("/v1/admin/billing/events", query_string={"limit": 1}).get_json()["next_cursor"]
    assert api("viewer").get(URL, query_string={"cursor": events_cursor}).status_code == 400


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "apply"),
        ({"apply": False}, "apply"),
        ({"apply": "yes please"}, "apply"),
        ({"apply": "true"}, "apply"),
        ({"apply": 1}, "apply"),
        ({"apply": True, "user_ids": []}, "user_ids"),
        ({"apply": True, "user_ids": [f"user-{n}" for n in range(1001)]}, "user_ids"),
        ({"apply": True, "source": "provider"}, "source"),
        ({"apply": True, "reason": "x" * 501}, "reason"),
    ],
)
def test_bad_apply_requests_are_422_and_change_nothing(api, tx, edited, body, field):
    admin = api("admin")
    audits = audit_count(tx)
    resp = admin.post(URL, json=body)
    assert resp.status_code == 422
    assert resp.get_json()["code"] == "validation_failed" and field in resp.get_json()["errors"]
    assert audit_count(tx) == audits and stored(tx, "user-a")[1] == "active"


def test_apply_to_an_unknown_user_is_404_and_fixes_nobody(api, tx, edited):
    resp = api("admin").post(URL, json={"apply": True, "user_ids": ["user-a", "user-nobody"]})
    assert resp.status_code == 404 and "user-nobody" in resp.get_json()["detail"]
    assert audit_count(tx, "reconcile.apply") == 0 and stored(tx, "user-a")[1] == "active"
