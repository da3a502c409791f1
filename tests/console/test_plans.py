"""The plans page: the catalog with its stale banner, and a sync that shows the dry-run diff before it applies."""

import re

import pytest
from sqlalchemy import func, select

from app import clock
from app.models import AuditEntry, Plan
from app.services import plans
from app.services.uow import unit_of_work
from tests.factories import PlanFactory

PLANS = "/admin/plans"
SYNC = "/admin/plans/sync"


def count(tx, model, *where) -> int:
    return tx.scalar(select(func.count()).select_from(model).where(*where))


def test_the_catalog_shows_active_and_inactive_plans_and_the_stale_banner(console_as, tx, frozen_clock):
    PlanFactory(code="starter", amount=2000)
    PlanFactory(code="legacy", active=False)
    with unit_of_work() as session:
        plans.mark_catalog_stale(session, "price.updated evt_1", now=clock.utcnow())
    page = console_as("viewer").get(PLANS).get_data(as_text=True)
    assert page.index("<code>starter</code>") < page.index("<code>legacy</code>")
    assert "20.00 USD" in page and 'badge-inactive">inactive' in page and 'badge-active">active' in page
    assert re.search(
        r'class="banner-stale" role="alert">The provider changed the catalog[^<]*price.updated evt_1', page
    )
    assert SYNC not in page  # a viewer gets no sync button


@pytest.mark.parametrize("role, button", [("viewer", False), ("support", False), ("admin", True)])
def test_only_an_admin_gets_the_sync_button(console_as, tx, role, button):
    assert (SYNC in console_as(role).get(PLANS).get_data(as_text=True)) is button


@pytest.mark.parametrize("role", ["viewer", "support"])
def test_a_sync_by_another_role_is_a_403_page(console_as, tx, role):
    assert console_as(role).submit(SYNC, form_page=PLANS).status_code == 403
    assert count(tx, Plan) == 0


def test_a_sync_without_csrf_is_refused(console_as, tx):
    assert console_as("admin").submit(SYNC, csrf=False).status_code == 400
    assert count(tx, Plan) == 0


def test_a_sync_shows_the_diff_first_then_applies_it_when_confirmed(console_as, tx):
    PlanFactory(code="starter", provider_price_id="price_1PgafmB7WZ01zgkW6dKueIc5", name="Old name", amount=2000)
    PlanFactory(code="gone", provider_price_id="price_gone")
    admin = console_as("admin")
    page = admin.submit(SYNC, form_page=PLANS).get_data(as_text=True)
    assert "Sync the plan catalog from the catalog provider" in page
    assert "<li>create legacy-basic, pro, pro-annual, team</li>" in page
    assert "<li>update starter</li>" in page and "<li>deactivate gone</li>" in page
    assert count(tx, Plan) == 2 and count(tx, AuditEntry, AuditEntry.action == "plans.sync") == 0

    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    no_reason = admin.client.post(SYNC, data={"csrf_token": token, "confirmed": "yes"}).get_data(as_text=True)
    assert "<li>update starter</li>" in no_reason and 'id="reason-error"' in no_reason
    assert count(tx, Plan) == 2 and count(tx, AuditEntry, AuditEntry.action == "plans.sync") == 0
    resp = admin.client.post(SYNC, data={"csrf_token": token, "confirmed": "yes", "reason": "team plan launch"})
    assert resp.status_code == 302 and resp.headers["Location"] == PLANS
    page = admin.get(PLANS).get_data(as_text=True)
    assert "Plans synced: create legacy-basic, pro, pro-annual, team; update starter; deactivate gone" in page
    assert count(tx, Plan) == 6 and count(tx, Plan, Plan.active.is_(True)) == 4
    [entry] = tx.scalars(select(AuditEntry).where(AuditEntry.action == "plans.sync"))
    assert entry.reason == "team plan launch — from the catalog provider"


def test_an_unreadable_provider_is_an_error_page_and_changes_nothing(console_app, console_as, tx, monkeypatch):
    monkeypatch.setitem(console_app.config, "PLANS_PROVIDER", "stripe")
    monkeypatch.setitem(console_app.config, "STRIPE_API_KEY", None)
    resp = console_as("admin").submit(SYNC, form_page=PLANS)
    assert resp.status_code == 502 and "STRIPE_API_KEY is not set" in resp.get_data(as_text=True)
    assert count(tx, Plan) == 0
