"""Plans sync from both providers: created, updated, deactivated, unchanged, dry run, and a second sync."""

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from app import clock
from app.models import AuditEntry, Plan
from app.services import plans
from app.services.errors import ProviderUnavailable
from tests.factories import PlanFactory

FIXTURES = Path(__file__).parent.parent / "fixtures" / "stripe"


def catalog_file(tmp_path, *entries):
    path = tmp_path / "plans.json"
    path.write_text(json.dumps({"plans": list(entries)}))
    return path


def plan_entry(code, price_id, amount=2000, **extra):
    return {
        "code": code,
        "provider_price_id": price_id,
        "name": code.title(),
        "amount": amount,
        "currency": "usd",
        "interval": "month",
        "credits_per_period": 1000,
        **extra,
    }


@pytest.fixture
def current_catalog(tx):
    """Three plans: `starter` stays, `pro` changes price, `old` is no longer offered."""
    PlanFactory(code="starter", provider_price_id="price_starter", name="Starter", amount=2000, credits_per_period=1000)
    PlanFactory(code="pro", provider_price_id="price_pro", name="Pro", amount=9900, credits_per_period=1000)
    PlanFactory(code="old", provider_price_id="price_old", name="Old", amount=500, credits_per_period=1000)


def sync(provider, cli_actor, dry_run=False):
    return plans.sync_plans(provider, dry_run=dry_run, actor=cli_actor, now=clock.utcnow())


def rows(tx):
    tx.expire_all()
    return {plan.code: (plan.amount, plan.active) for plan in tx.scalars(select(Plan))}


def sync_audits(tx):
    return tx.scalars(select(AuditEntry).where(AuditEntry.action == "plans.sync")).all()


EXPECTED = {"created": ["team"], "updated": ["pro"], "deactivated": ["old"], "unchanged": ["starter"]}
AFTER_SYNC = {"starter": (2000, True), "pro": (12900, True), "old": (500, False), "team": (29900, True)}
BEFORE_SYNC = {"starter": (2000, True), "pro": (9900, True), "old": (500, True)}


def check_sync(tx, provider, cli_actor, frozen_clock):
    """The behaviour both providers share, given a provider offering starter, pro at 12900, and team."""
    dry = sync(provider, cli_actor, dry_run=True)
    assert (dry.dry_run, dry.created, dry.updated, dry.deactivated, dry.unchanged) == (True, *EXPECTED.values())
    assert rows(tx) == BEFORE_SYNC and sync_audits(tx) == []
    assert plans.catalog_status(tx).synced_at is None

    report = sync(provider, cli_actor)
    assert (report.dry_run, report.created, report.updated, report.deactivated, report.unchanged) == (
        False,
        *EXPECTED.values(),
    )
    assert rows(tx) == AFTER_SYNC
    [entry] = sync_audits(tx)
    assert (entry.id, entry.actor, entry.user_id) == (report.audit_id, "test-operator", None)
    assert entry.before["pro"]["amount"] == 9900 and entry.after["pro"]["amount"] == 12900
    assert entry.after["old"]["active"] is False and "team" in entry.after and "team" not in entry.before
    assert plans.catalog_status(tx).synced_at == frozen_clock.now

    again = sync(provider, cli_actor)
    assert (again.created, again.updated, again.deactivated) == ([], [], [])
    assert again.unchanged == ["old", "pro", "starter", "team"]


def test_the_catalog_provider_syncs_the_file(tx, tmp_path, current_catalog, cli_actor, frozen_clock):
    path = catalog_file(
        tmp_path,
        plan_entry("starter", "price_starter"),
        plan_entry("pro", "price_pro", amount=12900),
        plan_entry("team", "price_team", amount=29900),
    )
    check_sync(tx, plans.CatalogProvider(path), cli_actor, frozen_clock)


def test_a_plan_marked_inactive_in_the_catalog_is_deactivated(tx, tmp_path, current_catalog, cli_actor):
    path = catalog_file(
        tmp_path,
        plan_entry("starter", "price_starter", active=False),
        plan_entry("pro", "price_pro", amount=9900),
        plan_entry("old", "price_old", amount=500),
    )
    report = sync(plans.CatalogProvider(path), cli_actor)
    assert (report.deactivated, report.unchanged) == (["starter"], ["old", "pro"])


def test_a_broken_catalog_file_changes_nothing(tx, tmp_path, current_catalog, cli_actor):
    path = tmp_path / "plans.json"
    path.write_text("{broken")
    with pytest.raises(ProviderUnavailable, match="not valid JSON"):
        sync(plans.CatalogProvider(path), cli_actor)
    assert rows(tx) == BEFORE_SYNC and sync_audits(tx) == []


def price_ids(tx):
    tx.expire_all()
    return {plan.code: plan.provider_price_id for plan in tx.scalars(select(Plan))}


def test_two_plans_may_trade_their_price_ids(tx, tmp_path, current_catalog, cli_actor):
    path = catalog_file(
        tmp_path,
        plan_entry("starter", "price_pro"),
        plan_entry("pro", "price_starter", amount=9900),
        plan_entry("old", "price_old", amount=500),
    )
    report = sync(plans.CatalogProvider(path), cli_actor)
    assert (report.updated, report.unchanged) == (["pro", "starter"], ["old"])
    assert price_ids(tx) == {"starter": "price_pro", "pro": "price_starter", "old": "price_old"}
    assert len(sync_audits(tx)) == 1


@pytest.mark.parametrize(
    "entries, message",
    [
        # price_starter now carries the code `pro`, but the plan `pro` (price_pro, no longer offered) keeps it
        ([plan_entry("pro", "price_starter")], "plan code 'pro'"),
        ([plan_entry("team", "price_team"), plan_entry("scale", "price_team")], "price id 'price_team'"),
        # one offered plan matches `starter` by price id, the other by code
        ([plan_entry("starter-v2", "price_starter"), plan_entry("starter", "price_new")], "plan 'starter'"),
    ],
)
def test_a_catalog_that_cannot_be_stored_is_refused_and_changes_nothing(
    tx, tmp_path, current_catalog, cli_actor, entries, message
):
    provider = plans.CatalogProvider(catalog_file(tmp_path, *entries))
    for dry_run in (True, False):
        with pytest.raises(ProviderUnavailable, match=message):
            sync(provider, cli_actor, dry_run=dry_run)
    assert rows(tx) == BEFORE_SYNC and sync_audits(tx) == []


@pytest.mark.parametrize(
    "extra",
    [{"name": "Pro\x00"}, {"provider_price_id": "price_\ud800"}, {"amount": 2**31}, {"credits_per_period": 2**31}],
    ids=["nul-name", "surrogate-price", "amount-2^31", "credits-2^31"],
)
def test_a_catalog_value_the_database_cannot_store_changes_nothing(tx, tmp_path, current_catalog, cli_actor, extra):
    """Refused as an invalid catalog (502 on the API, one line on the CLI), not a database error and a 500."""
    path = catalog_file(tmp_path, {**plan_entry("pro", "price_pro"), **extra})
    with pytest.raises(ProviderUnavailable, match="invalid plans"):
        sync(plans.CatalogProvider(path), cli_actor)
    assert rows(tx) == BEFORE_SYNC and sync_audits(tx) == []


# --- Stripe, through the SDK, against a local fake of GET /v1/prices -------------------------------------------


def stripe_price(price_id, lookup_key, amount, product_name, **metadata):
    """A real-shaped price with its product expanded (as `expand[]=data.product` returns it)."""
    price = json.loads((FIXTURES / "price.json").read_text())
    product = json.loads((FIXTURES / "product.json").read_text())
    product.update(id=f"prod_{lookup_key or price_id}", name=product_name, metadata={})
    price.update(id=price_id, lookup_key=lookup_key, unit_amount=amount, unit_amount_decimal=str(amount))
    price.update(product=product, metadata=metadata)
    return price


OFFERED = [
    stripe_price("price_starter", "starter", 2000, "Starter", credits_per_period="1000"),
    stripe_price("price_pro", None, 12900, "Pro", plan_code="pro", credits_per_period="1000"),
    stripe_price("price_team", "team", 29900, "Team", credits_per_period="1000"),
    stripe_price("price_no_code", None, 100, "Sticker"),  # no lookup key or plan_code: not a plan
]


def test_the_stripe_provider_reads_every_page(tx, current_catalog, cli_actor, frozen_clock, fake_stripe):
    server = fake_stripe(OFFERED)
    provider = plans.StripeProvider("sk_test_fake", server.base, max_network_retries=0)
    check_sync(tx, provider, cli_actor, frozen_clock)
    path, query, authorization = server.requests[0]
    assert (path, query["active"], query["expand[0]"]) == ("/v1/prices", ["true"], ["data.product"])
    assert authorization == "Bearer sk_test_fake"
    assert [q.get("starting_after") for _, q, _ in server.requests[:2]] == [None, ["price_pro"]]


def test_a_stripe_price_takes_its_name_and_credits_from_the_price_or_product(fake_stripe):
    price = stripe_price("price_x", "scale", 50000, "Scale", credits_per_period="250000")
    price["nickname"] = "Scale (monthly)"
    server = fake_stripe([price])
    [spec] = plans.StripeProvider("sk_test_fake", server.base, max_network_retries=0).fetch_plans()
    assert spec == plans.PlanSpec("scale", "price_x", "Scale (monthly)", 50000, "usd", "month", 250000, True)


def test_a_stripe_price_the_database_cannot_store_is_skipped(fake_stripe):
    offered = [
        stripe_price("price_big", "big", 100, "Big", credits_per_period="2147483648"),
        stripe_price("price_nul", "nul", 100, "Nul\x00"),
        stripe_price("price_ok", "ok", 100, "Ok", credits_per_period="10"),
    ]
    server = fake_stripe(offered)
    specs = plans.StripeProvider("sk_test_fake", server.base, max_network_retries=0).fetch_plans()
    assert [spec.code for spec in specs] == ["ok"]


def test_stripe_errors_change_nothing(tx, current_catalog, cli_actor, fake_stripe):
    server = fake_stripe(OFFERED)
    provider = plans.StripeProvider("sk_test_fake", server.base + "/nowhere", max_network_retries=0)
    with pytest.raises(ProviderUnavailable, match="Stripe could not be read"):
        sync(provider, cli_actor)
    assert rows(tx) == BEFORE_SYNC and sync_audits(tx) == []


def test_stripe_without_an_api_key_is_refused(cli_actor, tx):
    with pytest.raises(ProviderUnavailable, match="STRIPE_API_KEY"):
        sync(
            plans.configured_provider({"PLANS_PROVIDER": "stripe", "STRIPE_API_KEY": None, "STRIPE_API_BASE": None}),
            cli_actor,
        )
