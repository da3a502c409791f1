"""GET /plans and POST /plans/sync through the API."""

import json

import pytest
from sqlalchemy import select

from app import clock
from app.models import AuditEntry
from app.services import plans
from app.services.uow import unit_of_work
from tests.factories import PlanFactory

PLANS_URL = "/v1/admin/billing/plans"
SYNC_URL = "/v1/admin/billing/plans/sync"


@pytest.mark.parametrize("role", ["viewer", "support", "admin"])
def test_every_role_lists_the_plans_with_the_catalog_status(api, tx, frozen_clock, role):
    PlanFactory(code="starter", provider_price_id="price_s", amount=2000)
    PlanFactory(code="legacy", provider_price_id="price_l", active=False)
    with unit_of_work() as session:
        plans.mark_catalog_stale(session, "price.updated evt_1", now=clock.utcnow())
    body = api(role).get(PLANS_URL).get_json()
    assert [plan["code"] for plan in body["items"]] == ["starter", "legacy"]
    assert body["items"][0] == {
        "code": "starter",
        "provider_price_id": "price_s",
        "name": "Starter",
        "amount": 2000,
        "currency": "usd",
        "interval": "month",
        "credits_per_period": 1000,
        "active": True,
    }
    assert (body["total"], body["next_cursor"], body["stale"]) == (2, None, True)
    assert (body["stale_since"], body["stale_reason"], body["synced_at"]) == (
        frozen_clock.now.isoformat(),
        "price.updated evt_1",
        None,
    )


def test_a_sync_from_the_shipped_catalog_creates_its_plans_then_changes_nothing(api, tx):
    admin = api("admin")
    dry = admin.post(SYNC_URL, json={"dry_run": True}).get_json()
    assert dry == {
        "dry_run": True,
        "created": ["legacy-basic", "pro", "pro-annual", "starter", "team"],
        "updated": [],
        "deactivated": [],
        "unchanged": [],
    }
    assert admin.get(PLANS_URL).get_json()["total"] == 0
    assert admin.post(SYNC_URL, json={}).get_json()["created"] == dry["created"]
    again = admin.post(SYNC_URL, json={"dry_run": False}).get_json()
    assert (again["created"], again["updated"], len(again["unchanged"])) == ([], [], 5)
    assert len(tx.scalars(select(AuditEntry).where(AuditEntry.action == "plans.sync")).all()) == 2
    assert admin.get(PLANS_URL).get_json()["stale"] is False


def test_the_reason_of_a_sync_lands_in_its_audit_row(api, tx):
    assert api("admin").post(SYNC_URL, json={"reason": "new team plan"}).status_code == 200
    [entry] = tx.scalars(select(AuditEntry).where(AuditEntry.action == "plans.sync")).all()
    assert entry.reason == "new team plan — from the catalog provider"


@pytest.mark.parametrize(
    "body", [{"dry_run": "yes please"}, {"dry_run": "false"}, {"dry_run": 0}, {"apply": True}, {"reason": "x" * 501}]
)
def test_a_bad_sync_body_is_validation_failed(api, body):
    resp = api("admin").post(SYNC_URL, json=body)
    assert (resp.status_code, resp.get_json()["code"]) == (422, "validation_failed")


def test_an_unreadable_provider_is_502_and_changes_nothing(app, api, tx, monkeypatch):
    monkeypatch.setitem(app.config, "PLANS_PROVIDER", "stripe")
    monkeypatch.setitem(app.config, "STRIPE_API_KEY", None)
    resp = api("admin").post(SYNC_URL, json={})
    assert (resp.status_code, resp.get_json()["code"]) == (502, "provider_unavailable")
    assert "STRIPE_API_KEY" in resp.get_json()["detail"]
    assert api("admin").get(PLANS_URL).get_json()["total"] == 0


def test_a_catalog_that_cannot_be_stored_is_502_not_a_server_error(app, api, tx, tmp_path, monkeypatch):
    PlanFactory(code="starter", provider_price_id="price_s")
    PlanFactory(code="pro", provider_price_id="price_p")
    entry = {"name": "Pro", "amount": 100, "currency": "usd", "interval": "month", "credits_per_period": 1}
    path = tmp_path / "plans.json"
    path.write_text(json.dumps({"plans": [entry | {"code": "pro", "provider_price_id": "price_s"}]}))
    monkeypatch.setitem(app.config, "PLANS_CATALOG", str(path))
    resp = api("admin").post(SYNC_URL, json={})
    assert (resp.status_code, resp.get_json()["code"]) == (502, "provider_unavailable")
    assert "plan code 'pro' would belong to two plans" in resp.get_json()["detail"]
    assert [(plan["code"], plan["provider_price_id"]) for plan in api("viewer").get(PLANS_URL).get_json()["items"]] == [
        ("pro", "price_p"),
        ("starter", "price_s"),
    ]
