"""Reconcile against the provider: Stripe's subscriptions through the SDK, paged, throttled, never guessing."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.models import AuditEntry, Role, Subscription
from app.services import entitlements, reconcile
from app.services.actor import Actor, Channel
from app.services.errors import ProviderUnavailable
from app.services.reconcile import Kind, RateLimiter, Source, StripeSubscriptions
from tests.factories import CustomerFactory, PlanFactory, SubscriptionFactory
from tests.webhooks import subscription

PRICE = "price_1PgafmB7WZ01zgkW6dKueIc5"


class FakeTime:
    """A monotonic clock that only `sleep` moves: the limiter's waits add up without any real waiting."""

    def __init__(self):
        self.now, self.slept = 100.0, []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def at_stripe(sub_id, customer, status, period_end):
    return subscription(
        sub_id=sub_id, customer=customer, user_id=None, status=status, price=PRICE, period_end=period_end
    )


@pytest.fixture
def world(tx, frozen_clock, fake_stripe):
    """Four customers, and what Stripe holds for them."""
    end = (frozen_clock.now + timedelta(days=30)).replace(microsecond=0)
    PlanFactory(code="starter-test", provider_price_id=PRICE)
    for n in (1, 2, 3):
        CustomerFactory(user_id=f"user-p{n}", provider_customer_id=f"cus_p{n}")
        SubscriptionFactory(
            user_id=f"user-p{n}",
            plan="starter-test",
            status="active",
            valid_until=end,
            provider_subscription_id=f"sub_p{n}",
        )
    CustomerFactory(user_id="user-p4", provider_customer_id="cus_p4")  # no row here
    CustomerFactory(user_id="user-p5", provider_customer_id=None)  # not a provider customer
    server = fake_stripe(
        subscriptions=[
            at_stripe("sub_p1", "cus_p1", "past_due", end),  # payment failed: past_due here too
            at_stripe("sub_p2", "cus_p2", "canceled", end),
            at_stripe("sub_p2b", "cus_p2", "active", end),  # another live subscription: a person decides
            at_stripe("sub_p3", "cus_p3", "active", end),  # matches; with two old ones, two pages
            at_stripe("sub_p3old1", "cus_p3", "canceled", end),
            at_stripe("sub_p3old2", "cus_p3", "canceled", end),
            at_stripe("sub_p4", "cus_p4", "active", end),
        ]
    )
    return server, end


def provider_for(server, time=None):
    time = time or FakeTime()
    limiter = RateLimiter(reconcile.STRIPE_REQUESTS_PER_SECOND, clock=time.clock, sleep=time.sleep)
    return StripeSubscriptions("sk_test_fake", server.base, limiter=limiter, max_network_retries=0)


def preview(provider, cli_actor, **kwargs):
    return reconcile.find_mismatches(actor=cli_actor, source=Source.PROVIDER, provider=provider, **kwargs)


def test_the_provider_source_compares_every_customer_with_stripe(world, cli_actor):
    server, end = world
    page = preview(provider_for(server), cli_actor)
    assert page.checked == 5 and page.next_cursor is None
    assert [(m.user_id, m.kind, m.expected, m.actual, m.fix) for m in page.mismatches] == [
        ("user-p1", Kind.STATUS, "past_due", "active", {"status": "past_due"}),
        ("user-p2", Kind.PROVIDER_SUBSCRIPTION_DIFFERS, ["sub_p2b"], "sub_p2", None),
        (
            "user-p4",
            Kind.MISSING_SUBSCRIPTION,
            {"plan": "starter-test", "status": "active", "valid_until": end, "provider_subscription_id": "sub_p4"},
            None,
            {"plan": "starter-test", "status": "active", "valid_until": end, "provider_subscription_id": "sub_p4"},
        ),
    ]
    assert "no automatic fix" in page.mismatches[1].why


def test_every_page_of_a_customers_subscriptions_is_read_through_the_sdk(world, cli_actor):
    server, _ = world
    preview(provider_for(server), cli_actor, user_id="user-p3")
    assert [(path, query.get("starting_after")) for path, query, _ in server.requests] == [
        ("/v1/subscriptions", None),
        ("/v1/subscriptions", ["sub_p3old1"]),
    ]
    _, query, authorization = server.requests[0]
    assert (query["customer"], query["status"], authorization) == (["cus_p3"], ["all"], "Bearer sk_test_fake")


def test_requests_are_spaced_below_the_rate_limit_without_real_sleeping(world, cli_actor):
    server, _ = world
    time = FakeTime()
    preview(provider_for(server, time), cli_actor)
    interval = 1 / reconcile.STRIPE_REQUESTS_PER_SECOND
    assert len(server.requests) == 5  # p1, p2, p3 (two pages), p4; p5 has no provider id
    assert time.slept == pytest.approx([interval] * 4)  # the clock never moved on its own, so each waits
    assert reconcile.STRIPE_REQUESTS_PER_SECOND < 100


def test_the_limiter_does_not_wait_when_requests_are_far_apart():
    time = FakeTime()
    limiter = RateLimiter(10, clock=time.clock, sleep=time.sleep)
    limiter.acquire()
    time.now += 0.5
    limiter.acquire()
    limiter.acquire()
    assert time.slept == pytest.approx([0.1])


def test_apply_fixes_what_has_a_fix_and_leaves_a_differing_subscription(world, tx, cli_actor, frozen_clock):
    server, _ = world
    report = reconcile.apply_fixes(
        actor=cli_actor, now=frozen_clock.now, source=Source.PROVIDER, provider=provider_for(server)
    )
    assert (report.checked, report.fixed, len(report.mismatches)) == (5, 2, 3)
    rows = {row.user_id: (row.status, row.provider_subscription_id) for row in tx.scalars(select(Subscription))}
    assert rows["user-p1"] == ("past_due", "sub_p1")
    assert rows["user-p2"] == ("active", "sub_p2")  # untouched
    assert rows["user-p4"] == ("active", "sub_p4")
    entries = tx.scalars(select(AuditEntry).where(AuditEntry.action == "reconcile.apply")).all()
    assert sorted(entry.user_id for entry in entries) == ["user-p1", "user-p4"]
    again = preview(provider_for(server), cli_actor)
    assert [m.kind for m in again.mismatches] == [Kind.PROVIDER_SUBSCRIPTION_DIFFERS]


def test_a_stored_subscription_stripe_does_not_know_defaults_to_unpaid(world, tx, cli_actor, fake_stripe):
    server = fake_stripe(subscriptions=[])
    page = preview(provider_for(server), cli_actor, user_id="user-p1")
    [mismatch] = page.mismatches
    assert (mismatch.kind, mismatch.expected, mismatch.fix) == (Kind.STATUS, "unpaid", {"status": "unpaid"})
    assert "no subscription sub_p1" in mismatch.why


def test_stripe_errors_are_provider_unavailable(world, cli_actor):
    server, _ = world
    broken = StripeSubscriptions("sk_test_fake", server.base + "/nowhere", max_network_retries=0)
    with pytest.raises(ProviderUnavailable, match="Stripe could not be read"):
        preview(broken, cli_actor)


def test_the_provider_source_through_the_api(app, api, world, monkeypatch):
    server, _ = world
    monkeypatch.setitem(app.config, "PLANS_PROVIDER", "stripe")
    monkeypatch.setitem(app.config, "STRIPE_API_KEY", "sk_test_fake")
    monkeypatch.setitem(app.config, "STRIPE_API_BASE", server.base)
    monkeypatch.setattr(reconcile, "STRIPE_REQUESTS_PER_SECOND", 1e9)  # the throttle is tested above
    body = api("viewer").get("/v1/admin/billing/reconcile", query_string={"source": "provider", "limit": 1}).get_json()
    assert [(m["user_id"], m["kind"], m["fix"]) for m in body["mismatches"]] == [
        ("user-p1", "status", {"status": "past_due"})
    ]
    assert body["next_cursor"] is not None
    monkeypatch.setitem(app.config, "STRIPE_API_BASE", server.base + "/nowhere")
    resp = api("viewer").get("/v1/admin/billing/reconcile", query_string={"source": "provider"})
    assert resp.status_code == 502 and resp.get_json()["code"] == "provider_unavailable"


def test_an_override_is_kept_and_a_provider_fix_is_no_override(world, tx, cli_actor, frozen_clock):
    server, end = world
    support = Actor(name="ann", role=Role.SUPPORT, channel=Channel.API)
    extended = end + timedelta(days=60)
    frozen_clock.advance(minutes=1)
    entitlements.override_entitlements(
        "user-p3", valid_until=extended, reason="goodwill", actor=support, now=frozen_clock.now
    )
    assert preview(provider_for(server), cli_actor, user_id="user-p3").mismatches == []
    report = reconcile.apply_fixes(
        actor=cli_actor, now=frozen_clock.now, source=Source.PROVIDER, provider=provider_for(server)
    )
    assert "user-p3" not in [mismatch.user_id for mismatch in report.mismatches]
    assert tx.scalar(select(Subscription.valid_until).where(Subscription.user_id == "user-p3")) == extended
    # user-p1's status was fixed from Stripe above: that fix is no override, so Stripe's next change is seen
    server.subscriptions[0]["status"] = "active"
    [mismatch] = preview(provider_for(server), cli_actor, user_id="user-p1").mismatches
    assert (mismatch.kind, mismatch.expected, mismatch.actual) == (Kind.STATUS, "active", "past_due")
