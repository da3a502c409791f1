"""Overrides and grace resets through the API: the seed's examples, merge semantics, refusals and roles."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.config import DEFAULT_CATALOG
from app.models import AuditEntry, GracePeriod, Subscription
from app.services import demo, grace
from tests.factories import CustomerFactory, PlanFactory

OVERRIDE_URL = "/v1/admin/billing/entitlements/override"
GRACE_URL = "/v1/admin/billing/grace-period/reset"


@pytest.fixture
def demo_data(tx, cli_actor, frozen_clock):
    demo.load_demo_data(DEFAULT_CATALOG, actor=cli_actor, now=frozen_clock.now)


def audit_rows(tx, action):
    return tx.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)).all()


def subscription(tx, user_id):
    tx.expire_all()
    return tx.scalar(select(Subscription).where(Subscription.user_id == user_id))


def post_raw(api, url, body):
    """Send `body` exactly as curl -d would."""
    return api.post(url, data=body, content_type="application/json")


def test_the_seed_override_example_works_verbatim(api, tx, demo_data, frozen_clock):
    version = subscription(tx, "user-alice").version  # the demo's webhook events have updated it already
    resp = post_raw(
        api("support"),
        OVERRIDE_URL,
        '{"user_id": "user-alice", "credits": 5000, "valid_until": "2030-12-31T23:59:59Z"}',
    )
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert (body["user_id"], body["plan"], body["status"]) == ("user-alice", "pro", "active")
    assert (body["credits"], body["valid_until"]) == (5000, "2030-12-31T23:59:59+00:00")
    assert body["version"] == version + 1 and body["grace_period"] is None
    [entry] = audit_rows(tx, "entitlements.override")
    assert body["audit_id"] == entry.id
    assert (entry.user_id, entry.before["credits"], entry.after["credits"]) == ("user-alice", 8200, 5000)
    assert entry.after["valid_until"] == "2030-12-31T23:59:59+00:00"
    assert entry.context["channel"] == "api"


def test_the_seed_grace_reset_example_works_verbatim(api, tx, demo_data, frozen_clock):
    resp = post_raw(api("support"), GRACE_URL, '{"user_id": "user-bob", "days": 14}')
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    [entry] = audit_rows(tx, "grace.reset")
    assert body == {
        "user_id": "user-bob",
        "grace_period": {
            "starts_at": (frozen_clock.now - timedelta(days=2)).isoformat(),
            "ends_at": (frozen_clock.now + timedelta(days=14)).isoformat(),
            "status": "active",
            "reset_count": 1,
            "reason": "demo data: card declined",
        },
        "audit_id": entry.id,
    }
    assert entry.before["ends_at"] == (frozen_clock.now + timedelta(days=5)).isoformat()
    assert entry.after["ends_at"] == body["grace_period"]["ends_at"]


def test_a_delta_keeps_plan_and_expiry(api, tx, demo_data):
    before = subscription(tx, "user-alice")
    plan, valid_until = before.plan, before.valid_until
    resp = api("support").post(OVERRIDE_URL, json={"user_id": "user-alice", "credits_delta": -200, "reason": "refund"})
    assert resp.status_code == 200
    after = subscription(tx, "user-alice")
    assert (after.credits, after.plan, after.valid_until) == (8000, plan, valid_until)
    assert audit_rows(tx, "entitlements.override")[0].reason == "refund"


def test_a_plan_change_keeps_credits_and_expiry(api, tx, demo_data):
    valid_until = subscription(tx, "user-alice").valid_until
    assert api("support").post(OVERRIDE_URL, json={"user_id": "user-alice", "plan": "team"}).status_code == 200
    after = subscription(tx, "user-alice")
    assert (after.plan, after.credits, after.valid_until) == ("team", 8200, valid_until)


def test_an_override_creates_the_subscription_of_a_customer_without_one(api, tx, frozen_clock):
    CustomerFactory(user_id="user-new")
    PlanFactory(code="starter")
    resp = api("support").post(OVERRIDE_URL, json={"user_id": "user-new", "credits_delta": 50, "plan": "starter"})
    assert resp.status_code == 200
    body = resp.get_json()
    assert (body["plan"], body["status"], body["credits"], body["valid_until"]) == ("starter", "active", 50, None)
    [entry] = audit_rows(tx, "entitlements.override")
    assert entry.before is None and entry.after["credits"] == 50


def test_a_grace_reset_starts_a_grace_period_when_none_is_active(api, tx, demo_data, frozen_clock):
    resp = api("support").post(GRACE_URL, json={"user_id": "user-alice", "days": 3, "reason": "card expired"})
    grace = resp.get_json()["grace_period"]
    assert (grace["starts_at"], grace["ends_at"]) == (
        frozen_clock.now.isoformat(),
        (frozen_clock.now + timedelta(days=3)).isoformat(),
    )
    assert (grace["reset_count"], grace["reason"]) == (1, "card expired")
    assert audit_rows(tx, "grace.reset")[0].before is None


def test_a_grace_reset_never_shortens_a_period(api, tx, demo_data, frozen_clock):
    resp = api("support").post(GRACE_URL, json={"user_id": "user-bob", "days": 1})
    grace = resp.get_json()["grace_period"]
    assert grace["ends_at"] == (frozen_clock.now + timedelta(days=5)).isoformat()
    assert grace["reset_count"] == 1
    second = api("support").post(GRACE_URL, json={"user_id": "user-bob", "days": 30}).get_json()["grace_period"]
    assert (second["ends_at"], second["reset_count"]) == ((frozen_clock.now + timedelta(days=30)).isoformat(), 2)
    assert tx.scalar(select(func.count()).select_from(GracePeriod).where(GracePeriod.user_id == "user-bob")) == 1


def test_a_second_active_grace_period_is_a_conflict_not_a_server_error(api, tx, demo_data, monkeypatch):
    """Should a writer ever miss the active grace period (as one not locking the customer could, in a race), the
    database still refuses a second one, and the reset answers 409 with nothing changed."""
    monkeypatch.setattr(grace, "active_grace_for_update", lambda session, user_id: None)
    audits = len(audit_rows(tx, "grace.reset"))
    resp = api("support").post(GRACE_URL, json={"user_id": "user-bob", "days": 30, "reason": "card expired"})
    assert (resp.status_code, resp.get_json()["code"]) == (409, "conflict")
    assert "Another change started a grace period for user-bob" in resp.get_json()["detail"]
    [bob] = tx.scalars(select(GracePeriod).where(GracePeriod.user_id == "user-bob")).all()
    assert (bob.reset_count, len(audit_rows(tx, "grace.reset"))) == (0, audits)


ALICE = {"user_id": "user-alice"}
BAD_OVERRIDES = [
    (ALICE | {"credits": "5000"}, 422, "validation_failed", {"credits"}),
    (ALICE | {"credits": 1.5}, 422, "validation_failed", {"credits"}),
    (ALICE | {"credits": -1}, 422, "validation_failed", {"credits"}),
    (ALICE | {"credits": 2**31}, 422, "validation_failed", {"credits"}),
    (ALICE | {"credits_delta": True}, 422, "validation_failed", {"credits_delta"}),
    (ALICE | {"credits": 5, "credits_delta": 5}, 422, "validation_failed", {"credits", "credits_delta"}),
    (ALICE | {"plan": "platinum"}, 422, "validation_failed", {"plan"}),
    (ALICE | {"plan": "legacy-basic"}, 422, "validation_failed", {"plan"}),
    (ALICE | {"plan": None}, 422, "validation_failed", {"plan"}),
    (ALICE | {"valid_until": "2020-01-01T00:00:00Z"}, 422, "validation_failed", {"valid_until"}),
    (ALICE | {"valid_until": "2030-12-31T23:59:59"}, 422, "validation_failed", {"valid_until"}),
    (ALICE | {"valid_until": "next year"}, 422, "validation_failed", {"valid_until"}),
    (ALICE | {"credits": 5, "reason": "x" * 501}, 422, "validation_failed", {"reason"}),
    (ALICE, 422, "validation_failed", {"_schema"}),
    (ALICE | {"credits": 8200, "plan": "pro"}, 422, "validation_failed", {"credits", "plan"}),
    (ALICE | {"credits_delta": 0}, 422, "validation_failed", {"credits_delta"}),
    ({"credits": 5}, 422, "validation_failed", {"user_id"}),
    (ALICE | {"credits": 5, "bonus": 1}, 422, "validation_failed", {"bonus"}),
    (ALICE | {"credits_delta": -8201}, 422, "rule_violation", None),
    (ALICE | {"credits": 1.0}, 422, "validation_failed", {"credits"}),
    (ALICE | {"credits": False}, 422, "validation_failed", {"credits"}),
    (ALICE | {"credits": None}, 422, "validation_failed", {"credits"}),
    (ALICE | {"credits_delta": "1"}, 422, "validation_failed", {"credits_delta"}),
    (ALICE | {"credits_delta": None}, 422, "validation_failed", {"credits_delta"}),
    (ALICE | {"credits_delta": -(2**31)}, 422, "validation_failed", {"credits_delta"}),  # no balance allows it
    (ALICE | {"credits_delta": 2**31 - 1}, 422, "rule_violation", None),  # beyond the 32-bit column
    (ALICE | {"valid_until": None}, 422, "validation_failed", {"valid_until"}),
    (ALICE | {"valid_until": "2026-11-25T12:00:00Z"}, 422, "validation_failed", {"valid_until"}),  # now
    (ALICE | {"credits": 5, "reason": None}, 422, "validation_failed", {"reason"}),
    ({"user_id": None, "credits": 5}, 422, "validation_failed", {"user_id"}),
    ({"user_id": "user-nobody", "credits": 5}, 404, "not_found", None),
]
BOB = {"user_id": "user-bob"}
BAD_RESETS = [
    (BOB | {"days": 0}, 422, "validation_failed", {"days"}),
    (BOB | {"days": 91}, 422, "validation_failed", {"days"}),
    (BOB | {"days": "14"}, 422, "validation_failed", {"days"}),
    (BOB | {"days": 14.0}, 422, "validation_failed", {"days"}),
    (BOB | {"days": True}, 422, "validation_failed", {"days"}),
    (BOB | {"days": None}, 422, "validation_failed", {"days"}),
    (BOB | {"days": 14, "reason": None}, 422, "validation_failed", {"reason"}),
    (BOB | {"days": 14, "note": "hi"}, 422, "validation_failed", {"note"}),
    (BOB, 422, "validation_failed", {"days"}),
    (BOB | {"days": 14, "reason": "x" * 501}, 422, "validation_failed", {"reason"}),
    ({"user_id": "user-nobody", "days": 14}, 404, "not_found", None),
]


@pytest.mark.parametrize(
    "url, payload, status, code, fields",
    [(OVERRIDE_URL, *case) for case in BAD_OVERRIDES] + [(GRACE_URL, *case) for case in BAD_RESETS],
)
def test_bad_input_is_refused_and_changes_nothing(api, tx, demo_data, url, payload, status, code, fields):
    support = api("support")
    state = [(row.credits, row.plan, row.valid_until, row.version) for row in tx.scalars(select(Subscription))]
    audits = tx.scalar(select(func.count()).select_from(AuditEntry))
    resp = support.post(url, json=payload)
    assert resp.status_code == status, resp.get_json()
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert body["code"] == code
    if fields is not None:
        assert set(body["errors"]) == fields
    tx.expire_all()
    assert [(row.credits, row.plan, row.valid_until, row.version) for row in tx.scalars(select(Subscription))] == state
    assert tx.scalar(select(func.count()).select_from(AuditEntry)) == audits


@pytest.mark.parametrize("url", [OVERRIDE_URL, GRACE_URL])
@pytest.mark.parametrize("body", ["{not json", "[1, 2]", '"user-alice"', "null"])
def test_a_body_that_is_not_a_json_object_is_invalid_json(api, demo_data, url, body):
    resp = api("support").post(url, data=body, content_type="application/json")
    assert (resp.status_code, resp.get_json()["code"]) == (400, "invalid_json")


SUPPORT_POSTS = [
    (OVERRIDE_URL, {"user_id": "user-alice", "credits_delta": 1}),
    (GRACE_URL, {"user_id": "user-bob", "days": 14}),
]
ADMIN_POSTS = [("/v1/admin/billing/plans/sync", {"dry_run": True})]


@pytest.mark.parametrize(
    "url, payload, role, status",
    [
        (url, payload, role, 403 if role == "viewer" else 200)
        for url, payload in SUPPORT_POSTS
        for role in ("viewer", "support", "admin")
    ]
    + [
        (url, payload, role, 200 if role == "admin" else 403)
        for url, payload in ADMIN_POSTS
        for role in ("viewer", "support", "admin")
    ],
)
def test_each_post_is_gated_by_role(api, tx, demo_data, url, payload, role, status):
    client = api(role)
    audits = tx.scalar(select(func.count()).select_from(AuditEntry))
    resp = client.post(url, json=payload)
    assert resp.status_code == status, resp.get_json()
    if status == 403:
        assert resp.get_json()["code"] == "forbidden"
        assert tx.scalar(select(func.count()).select_from(AuditEntry)) == audits


@pytest.mark.parametrize("url, payload", SUPPORT_POSTS + ADMIN_POSTS)
def test_posts_without_a_key_are_auth_required(client, demo_data, url, payload):
    resp = client.post(url, json=payload)
    assert (resp.status_code, resp.get_json()["code"]) == (403, "auth_required")
