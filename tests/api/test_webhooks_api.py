"""The receiver, handlers, retries and replay, through the public endpoint and the admin API."""

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.models import (
    AuditEntry,
    BillingEvent,
    Customer,
    EventAttempt,
    GracePeriod,
    GraceStatus,
    Subscription,
)
from app.services import evidence, grace, webhooks
from app.services.plans import catalog_status
from tests.factories import CustomerFactory, GracePeriodFactory, PlanFactory, SubscriptionFactory
from tests.webhooks import OTHER_SECRET, deliver, event, fixture, invoice, sign, subscription

PRICE = "price_1PgafmB7WZ01zgkW6dKueIc5"  # the fixtures' price
EVENTS = "/v1/admin/billing/events"
REPLAY = "/v1/admin/billing/webhook/replay"


@pytest.fixture
def client(webhook_app, tx):
    return webhook_app.test_client()


@pytest.fixture
def starter(tx):
    return PlanFactory(code="starter-test", provider_price_id=PRICE)


def rows(tx, model, *where):
    return tx.scalar(select(func.count()).select_from(model).where(*where))


def stored(tx, event_id):
    return tx.scalar(
        select(BillingEvent).where(BillingEvent.event_id == event_id).execution_options(populate_existing=True)
    )


def paying_customer(user_id, provider_customer_id, **subscription):
    """A customer with a subscription, by default with the provider id `sub_` + the tail of the customer id."""
    CustomerFactory(user_id=user_id, provider_customer_id=provider_customer_id)
    subscription.setdefault("provider_subscription_id", "sub_" + provider_customer_id.removeprefix("cus_"))
    return SubscriptionFactory(user_id=user_id, **subscription)


def sub_event(frozen_clock, event_id, *, user_id="user-new", status="active", created=None, event_type=None, **kw):
    obj = subscription(
        sub_id=kw.get("sub_id", "sub_new0001"),
        customer=kw.get("customer", "cus_new0001"),
        user_id=user_id,
        status=status,
        price=kw.get("price", PRICE),
        period_end=frozen_clock.now + timedelta(days=30),
    )
    created = created or frozen_clock.now - timedelta(minutes=1)
    return event(event_type or "customer.subscription.updated", obj, event_id=event_id, created=created)


def test_a_subscription_event_of_a_newer_api_version_sets_plan_status_and_period(client, tx, starter, frozen_clock):
    resp = deliver(
        client, sub_event(frozen_clock, "evt_sub1", event_type="customer.subscription.created"), now=frozen_clock.now
    )
    assert resp.status_code == 200
    assert resp.get_json() == {"event_id": "evt_sub1", "status": "processed", "duplicate": False}
    sub = tx.scalar(select(Subscription).where(Subscription.user_id == "user-new"))
    assert (sub.plan, sub.status, sub.provider_subscription_id) == ("starter-test", "active", "sub_new0001")
    assert sub.valid_until == (frozen_clock.now + timedelta(days=30)).replace(microsecond=0)
    [entry] = tx.scalars(select(AuditEntry).where(AuditEntry.action == "subscription.update")).all()
    assert entry.actor == "webhook:evt_sub1" and entry.context["channel"] == "api"
    assert entry.before is None and entry.after["status"] == "active"
    event_row = stored(tx, "evt_sub1")
    assert (event_row.user_id, event_row.attempts, event_row.next_retry_at) == ("user-new", 1, None)


def test_an_older_api_version_with_the_period_on_the_subscription_and_a_plan_id(client, tx, starter, frozen_clock):
    document = sub_event(frozen_clock, "evt_old_api")
    obj = document["data"]["object"]
    item = obj["items"]["data"][0]
    del item["price"], item["current_period_end"]
    item["plan"]["id"] = PRICE
    obj["current_period_end"] = int((frozen_clock.now + timedelta(days=3)).timestamp())
    assert deliver(client, document, now=frozen_clock.now).get_json()["status"] == "processed"
    sub = tx.scalar(select(Subscription).where(Subscription.user_id == "user-new"))
    assert sub.plan == "starter-test"
    assert sub.valid_until == (frozen_clock.now + timedelta(days=3)).replace(microsecond=0)


def test_a_duplicate_delivery_is_stored_and_processed_once(client, tx, starter, frozen_clock):
    document = sub_event(frozen_clock, "evt_dup")
    deliver(client, document, now=frozen_clock.now)
    resp = deliver(client, document, now=frozen_clock.now)
    assert resp.status_code == 200 and resp.get_json()["duplicate"] is True
    assert rows(tx, BillingEvent) == 1 and rows(tx, EventAttempt) == 1
    assert rows(tx, AuditEntry, AuditEntry.action == "subscription.update") == 1


def test_invoice_before_subscription_fails_then_succeeds_on_replay(client, api, tx, starter, frozen_clock):
    created = frozen_clock.now - timedelta(minutes=1)
    paid = event(
        "invoice.paid", invoice(customer="cus_new0001", subscription="sub_new0001"), event_id="evt_inv", created=created
    )
    resp = deliver(client, paid, now=frozen_clock.now)
    assert resp.status_code == 200 and resp.get_json()["status"] == "failed"
    failed = stored(tx, "evt_inv")
    assert "No customer is known for cus_new0001" in failed.last_error
    assert failed.next_retry_at == frozen_clock.now + timedelta(minutes=1)

    deliver(
        client,
        sub_event(frozen_clock, "evt_sub", status="past_due", created=created - timedelta(seconds=5)),
        now=frozen_clock.now,
    )
    frozen_clock.advance(seconds=1)
    resp = api("admin").post(REPLAY, json={"event_id": "evt_inv"})
    assert resp.status_code == 200
    assert resp.get_json() == {
        "dry_run": False,
        "replayed": 1,
        "results": [{"event_id": "evt_inv", "status": "processed", "error": None}],
    }
    assert tx.scalar(select(Subscription.status).where(Subscription.user_id == "user-new")) == "active"
    replayed = stored(tx, "evt_inv")
    assert [a.trigger for a in replayed.attempt_history] == ["receive", "replay"]
    assert evidence_of(tx, "user-new")["status"] == ("active", "evt_inv")  # applied now, after evt_sub
    [audit_row] = tx.scalars(select(AuditEntry).where(AuditEntry.action == "webhook.replay")).all()
    assert audit_row.after == {"event_id": "evt_inv", "status": "processed", "error": None}
    assert audit_row.before["status"] == "failed" and audit_row.user_id == "user-new"


def test_replaying_a_processed_event_changes_no_balance_and_no_status(client, api, tx, frozen_clock):
    paying_customer("user-pay", "cus_pay", credits=700)
    failed = event(
        "invoice.payment_failed",
        invoice(customer="cus_pay", subscription="sub_pay"),
        event_id="evt_fail",
        created=frozen_clock.now,
    )
    assert deliver(client, failed, now=frozen_clock.now).get_json()["status"] == "processed"
    paid = event(
        "invoice.paid",
        invoice(customer="cus_pay", subscription="sub_pay"),
        event_id="evt_paid",
        created=frozen_clock.now + timedelta(seconds=1),
    )
    frozen_clock.advance(seconds=5)
    assert deliver(client, paid, now=frozen_clock.now).get_json()["status"] == "processed"
    before = tx.scalar(select(Subscription).execution_options(populate_existing=True))
    state = (before.status, before.credits, before.valid_until, before.version)
    audits = rows(tx, AuditEntry, AuditEntry.action.in_(["subscription.update", "grace.start", "grace.resolve"]))

    resp = api("admin").post(REPLAY, json={"event_ids": ["evt_fail", "evt_paid"]})
    assert [r["status"] for r in resp.get_json()["results"]] == ["processed", "processed"]
    after = tx.scalar(select(Subscription).execution_options(populate_existing=True))
    assert (
        (after.status, after.credits, after.valid_until, after.version) == state == ("active", 700, state[2], state[3])
    )
    assert rows(tx, GracePeriod, GracePeriod.status == GraceStatus.ACTIVE) == 0
    assert (
        rows(tx, AuditEntry, AuditEntry.action.in_(["subscription.update", "grace.start", "grace.resolve"])) == audits
    )
    assert "applies nothing twice" in stored(tx, "evt_fail").attempt_history[-1].error


def test_a_failed_payment_starts_grace_and_a_paid_invoice_resolves_it(client, tx, app, frozen_clock):
    paying_customer("user-g", "cus_g")
    failed = event(
        "invoice.payment_failed",
        invoice(customer="cus_g", subscription="sub_g"),
        event_id="evt_f",
        created=frozen_clock.now,
    )
    deliver(client, failed, now=frozen_clock.now)
    grace = tx.scalar(select(GracePeriod).where(GracePeriod.user_id == "user-g"))
    assert grace.status == "active" and grace.ends_at == frozen_clock.now + timedelta(
        days=app.config["GRACE_PERIOD_DAYS"]
    )
    assert tx.scalar(select(Subscription.status).where(Subscription.user_id == "user-g")) == "past_due"
    paid = event(
        "invoice.payment_succeeded",
        invoice(customer="cus_g", subscription="sub_g"),
        event_id="evt_p",
        created=frozen_clock.now + timedelta(seconds=2),
    )
    deliver(client, paid, now=frozen_clock.now)
    tx.refresh(grace)
    assert grace.status == "resolved"
    actions = list(tx.scalars(select(AuditEntry.action).where(AuditEntry.user_id == "user-g").order_by(AuditEntry.id)))
    assert actions[-4:] == ["subscription.update", "grace.start", "subscription.update", "grace.resolve"]


def test_an_older_event_never_overwrites_a_newer_one(client, tx, starter, frozen_clock):
    newer = sub_event(frozen_clock, "evt_new", status="canceled", created=frozen_clock.now - timedelta(seconds=10))
    older = sub_event(frozen_clock, "evt_old", status="active", created=frozen_clock.now - timedelta(seconds=20))
    deliver(client, newer, now=frozen_clock.now)
    resp = deliver(client, older, now=frozen_clock.now)
    assert resp.get_json()["status"] == "ignored"
    assert tx.scalar(select(Subscription.status)) == "canceled"
    [attempt] = stored(tx, "evt_old").attempt_history
    assert attempt.outcome == "ignored"
    assert (
        attempt.error.startswith("stale: event created ")
        and "is older than the last applied event created" in attempt.error
    )
    assert "sub_new0001" in attempt.error


def evidence_of(tx, user_id):
    """Reconcile's evidence for the user: per field, the value kept and the event that set it last."""
    document = tx.scalar(select(Customer.evidence).where(Customer.user_id == user_id))
    return {kept.field: (kept.value, kept.event.event_id) for kept in evidence.fields(document)}


def test_applied_events_are_kept_as_evidence_and_ignored_or_failed_ones_are_not(client, tx, starter, frozen_clock):
    deliver(client, sub_event(frozen_clock, "evt_new", status="past_due"), now=frozen_clock.now)
    older = sub_event(frozen_clock, "evt_old", status="canceled", created=frozen_clock.now - timedelta(hours=1))
    assert deliver(client, older, now=frozen_clock.now).get_json()["status"] == "ignored"
    paid = event(
        "invoice.paid",
        invoice(customer="cus_new0001", subscription="sub_new0001"),
        event_id="evt_paid",
        created=frozen_clock.now,
    )
    assert deliver(client, paid, now=frozen_clock.now).get_json()["status"] == "processed"
    unknown = event(
        "invoice.paid",
        invoice(customer="cus_nobody", subscription="sub_nobody"),
        event_id="evt_unknown",
        created=frozen_clock.now,
    )
    assert deliver(client, unknown, now=frozen_clock.now).get_json()["status"] == "failed"

    period_end = (frozen_clock.now + timedelta(days=30)).replace(microsecond=0)
    assert evidence_of(tx, "user-new") == {
        "status": ("active", "evt_paid"),
        "price_id": (PRICE, "evt_new"),
        "valid_until": (period_end, "evt_new"),
        "provider_subscription_id": ("sub_new0001", "evt_new"),
    }


def test_replaying_an_ignored_event_says_why_in_its_result(client, api, tx, starter, frozen_clock):
    deliver(
        client,
        sub_event(frozen_clock, "evt_new", created=frozen_clock.now - timedelta(seconds=10)),
        now=frozen_clock.now,
    )
    older = sub_event(frozen_clock, "evt_old", status="canceled", created=frozen_clock.now - timedelta(seconds=20))
    deliver(client, older, now=frozen_clock.now)
    [result] = api("admin").post(REPLAY, json={"event_id": "evt_old"}).get_json()["results"]
    assert result["status"] == "ignored" and result["error"].startswith("stale: event created ")
    assert tx.scalar(select(Subscription.status)) == "active"


def test_the_end_of_a_replaced_subscription_does_not_cancel_its_successor(client, tx, starter, frozen_clock):
    old_sub = {"sub_id": "sub_old0001", "created": frozen_clock.now - timedelta(minutes=5)}
    deliver(client, sub_event(frozen_clock, "evt_old", **old_sub), now=frozen_clock.now)
    deliver(client, sub_event(frozen_clock, "evt_new", sub_id="sub_new0001"), now=frozen_clock.now)
    ended = sub_event(frozen_clock, "evt_end", sub_id="sub_old0001", status="canceled", created=frozen_clock.now)
    ended["type"] = "customer.subscription.deleted"
    assert deliver(client, ended, now=frozen_clock.now).get_json()["status"] == "ignored"
    sub = tx.scalar(select(Subscription).where(Subscription.user_id == "user-new"))
    assert (sub.status, sub.provider_subscription_id) == ("active", "sub_new0001")
    [attempt] = stored(tx, "evt_end").attempt_history
    assert "is about sub_old0001, not user-new's current subscription sub_new0001" in attempt.error


@pytest.mark.parametrize(
    "event_type, status, in_grace",
    [
        ("invoice.payment_failed", "active", False),  # e.g. a late failure of the subscription this one replaced
        ("invoice.paid", "past_due", True),
        ("invoice.payment_succeeded", "past_due", True),
    ],
)
def test_an_invoice_of_another_subscription_changes_nothing(
    client, api, tx, frozen_clock, event_type, status, in_grace
):
    current = paying_customer("user-cur", "cus_cur", status=status)
    if in_grace:
        GracePeriodFactory(user_id="user-cur", ends_at=frozen_clock.now + timedelta(days=2))
    state = (current.status, current.version, current.last_event_created_at)
    graces = tx.execute(select(GracePeriod.status, GracePeriod.ends_at)).all()
    audits = rows(tx, AuditEntry)
    other = invoice(customer="cus_cur", subscription="sub_old")
    document = event(event_type, other, event_id="evt_other", created=frozen_clock.now)

    assert deliver(client, document, now=frozen_clock.now).get_json()["status"] == "ignored"
    tx.refresh(current)
    assert (current.status, current.version, current.last_event_created_at) == state
    assert tx.execute(select(GracePeriod.status, GracePeriod.ends_at)).all() == graces
    assert rows(tx, AuditEntry) == audits
    why = f"ignored: {event_type} is about sub_old, not user-cur's current subscription sub_cur, which stays as it is"
    assert [attempt.error for attempt in stored(tx, "evt_other").attempt_history] == [why]
    [result] = api("admin").post(REPLAY, json={"event_id": "evt_other"}).get_json()["results"]
    assert (result["status"], result["error"]) == ("ignored", why)


def test_a_late_payment_failure_of_a_replaced_subscription_leaves_its_successor_active(
    client, tx, starter, frozen_clock
):
    old_sub = {"sub_id": "sub_old0001", "created": frozen_clock.now - timedelta(minutes=5)}
    deliver(client, sub_event(frozen_clock, "evt_old", **old_sub), now=frozen_clock.now)
    deliver(client, sub_event(frozen_clock, "evt_new", sub_id="sub_new0001"), now=frozen_clock.now)
    late = one_off(invoice(customer="cus_new0001", subscription="sub_old0001"))
    late["subscription"] = "sub_old0001"  # as older API versions name it
    document = event("invoice.payment_failed", late, event_id="evt_late", created=frozen_clock.now)
    assert deliver(client, document, now=frozen_clock.now).get_json()["status"] == "ignored"
    sub = tx.scalar(select(Subscription).where(Subscription.user_id == "user-new"))
    assert (sub.status, sub.provider_subscription_id) == ("active", "sub_new0001")
    assert rows(tx, GracePeriod) == 0


def test_an_invoice_applies_to_a_subscription_without_a_provider_id(client, tx, app, frozen_clock):
    """Support granted it (or no subscription event named it yet): nothing to compare, so the invoice applies."""
    paying_customer("user-granted", "cus_granted", provider_subscription_id=None)
    failed = invoice(customer="cus_granted", subscription="sub_granted")
    document = event("invoice.payment_failed", failed, event_id="evt_granted", created=frozen_clock.now)
    assert deliver(client, document, now=frozen_clock.now).get_json()["status"] == "processed"
    sub = tx.scalar(select(Subscription).where(Subscription.user_id == "user-granted"))
    assert (sub.status, sub.provider_subscription_id) == ("past_due", None)
    assert tx.scalar(select(GracePeriod.status).where(GracePeriod.user_id == "user-granted")) == "active"


def test_catalog_events_mark_the_catalog_stale_and_other_types_are_ignored(client, tx, frozen_clock):
    plan_event = fixture("event")
    plan_event["created"] = int(frozen_clock.now.timestamp())
    assert deliver(client, plan_event, now=frozen_clock.now).get_json()["status"] == "processed"
    assert catalog_status(tx).stale and plan_event["id"] in catalog_status(tx).stale_reason
    other = event("customer.updated", fixture("customer"), event_id="evt_cust", created=frozen_clock.now)
    assert deliver(client, other, now=frozen_clock.now).get_json()["status"] == "ignored"
    assert "does not handle customer.updated" in stored(tx, "evt_cust").attempt_history[0].error


def test_a_second_secret_is_accepted(client, tx, frozen_clock):
    other = event("customer.updated", fixture("customer"), event_id="evt_rot", created=frozen_clock.now)
    assert deliver(client, other, now=frozen_clock.now, secret=OTHER_SECRET).status_code == 200


BAD_BODIES = {
    "not-json": b"{not json",
    "not-utf8": b'{"id": "evt_x", "type": "a\xff"}',
    "array": b"[1, 2]",
    "no-id": b'{"type": "invoice.paid", "created": 1}',
    "no-type": b'{"id": "evt_x", "created": 1}',
    "no-created": b'{"id": "evt_x", "type": "invoice.paid"}',
    "nul": b'{"id": "evt_x", "type": "invoice.paid", "created": 1, "data": {"object": {"name": "a\\u0000b"}}}',
    "nul-key": b'{"id": "evt_x", "type": "invoice.paid", "created": 1, "\\u0000": 1}',
    "surrogate": b'{"id": "evt_x", "type": "invoice.paid", "created": 1, "x": "\\ud800"}',
    "nan": b'{"id": "evt_x", "type": "invoice.paid", "created": 1, "x": NaN}',
    "huge-float": b'{"id": "evt_x", "type": "invoice.paid", "created": 1, "x": 1e400}',
    "huge-int": b'{"id": "evt_x", "type": "invoice.paid", "created": 1, "x": ' + b"9" * 5000 + b"}",
    "deep": b'{"id": "evt_x", "type": "invoice.paid", "created": 1, "x": ' + b"[" * 100 + b"]" * 100 + b"}",
    "very-deep": b'{"id": "evt_x", "type": "invoice.paid", "created": 1, "x": ' + b"[" * 100000 + b"]" * 100000 + b"}",
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_a_body_the_database_cannot_store_is_refused_and_nothing_is_stored(client, tx, frozen_clock, body):
    resp = deliver(client, {}, now=frozen_clock.now, body=body)
    assert resp.status_code == 400
    assert resp.mimetype == "application/problem+json" and resp.get_json()["code"] == "invalid_json"
    assert rows(tx, BillingEvent) == 0


def test_a_body_over_one_mib_is_refused(client, tx, frozen_clock):
    body = json.dumps({"id": "evt_big", "type": "x", "created": 1, "pad": "a" * (1024 * 1024)}).encode()
    resp = deliver(client, {}, now=frozen_clock.now, body=body)
    assert resp.status_code == 413 and resp.get_json()["code"] == "payload_too_large"
    assert rows(tx, BillingEvent) == 0


@pytest.mark.parametrize("header", [None, "garbage", "t=1,v1=00", "t=999999999999,v1=00"])
def test_a_bad_signature_is_a_400_and_nothing_is_stored(client, tx, frozen_clock, header):
    headers = {"Stripe-Signature": header} if header else {}
    resp = client.post("/v1/billing/webhooks", data=b'{"id": "evt_1", "type": "x", "created": 1}', headers=headers)
    assert resp.status_code == 400 and resp.get_json()["code"] == "invalid_signature"
    assert rows(tx, BillingEvent) == 0


def test_without_a_configured_secret_every_webhook_is_refused(app, tx, frozen_clock):
    body = b'{"id": "evt_1", "type": "x", "created": 1}'
    headers = {"Stripe-Signature": sign(body, timestamp=int(frozen_clock.now.timestamp()))}
    resp = app.test_client().post("/v1/billing/webhooks", data=body, headers=headers)
    assert resp.status_code == 400 and "No WEBHOOK_SECRET" in resp.get_json()["detail"]


def test_the_receiver_answers_200_even_when_processing_breaks(client, tx, frozen_clock, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(webhooks, "process_received", broken)
    other = event("customer.updated", fixture("customer"), event_id="evt_b", created=frozen_clock.now)
    resp = deliver(client, other, now=frozen_clock.now)
    assert resp.status_code == 200 and resp.get_json()["status"] == "received"
    assert stored(tx, "evt_b").next_retry_at == frozen_clock.now + webhooks.STRANDED_AFTER


@pytest.mark.parametrize("user_id", ["", "   ", "u" * 65], ids=["empty", "blank", "too-long"])
def test_a_subscription_event_naming_no_usable_user_id_fails_clearly_and_creates_no_user(
    client, tx, starter, frozen_clock, user_id
):
    document = sub_event(frozen_clock, "evt_bad_user")
    document["data"]["object"]["metadata"]["user_id"] = user_id
    assert deliver(client, document, now=frozen_clock.now).get_json()["status"] == "failed"
    assert "metadata.user_id" in stored(tx, "evt_bad_user").last_error
    assert rows(tx, Subscription) == 0 and rows(tx, Customer) == 0


def test_a_subscription_event_naming_no_customer_fails_clearly(client, tx, starter, frozen_clock):
    document = sub_event(frozen_clock, "evt_no_customer")
    del document["data"]["object"]["customer"]
    assert deliver(client, document, now=frozen_clock.now).get_json()["status"] == "failed"
    assert "names no customer" in stored(tx, "evt_no_customer").last_error
    assert rows(tx, Subscription) == 0 and rows(tx, Customer) == 0


def one_off(invoice_object):
    """The invoice as a one-off one: it names no subscription, at the top (older APIs) or under `parent`."""
    invoice_object.update(subscription=None, parent={"type": "quote_details", "quote_details": {"quote": "qt_1"}})
    return invoice_object


@pytest.mark.parametrize("event_type, status", [("invoice.payment_failed", "active"), ("invoice.paid", "canceled")])
def test_a_one_off_invoice_changes_no_subscription_and_no_grace(client, tx, frozen_clock, event_type, status):
    paying_customer("user-one", "cus_one", status=status)
    document = event(
        event_type,
        one_off(invoice(customer="cus_one", subscription="sub_one")),
        event_id="evt_one_off",
        created=frozen_clock.now,
    )
    audits = rows(tx, AuditEntry)
    assert deliver(client, document, now=frozen_clock.now).get_json()["status"] == "ignored"
    assert tx.scalar(select(Subscription.status).where(Subscription.user_id == "user-one")) == status
    assert rows(tx, GracePeriod) == 0 and rows(tx, AuditEntry) == audits
    assert "names no subscription" in stored(tx, "evt_one_off").attempt_history[0].error


def test_an_invoice_naming_its_subscription_at_the_top_as_older_apis_do_is_applied(client, tx, frozen_clock):
    paying_customer("user-top", "cus_top", status="past_due")
    document = event(
        "invoice.paid",
        one_off(invoice(customer="cus_top", subscription="sub_top")),
        event_id="evt_top",
        created=frozen_clock.now,
    )
    document["data"]["object"]["subscription"] = "sub_top"
    assert deliver(client, document, now=frozen_clock.now).get_json()["status"] == "processed"
    assert tx.scalar(select(Subscription.status).where(Subscription.user_id == "user-top")) == "active"


def test_a_failed_payment_during_an_active_grace_period_starts_no_second_one(client, tx, app, frozen_clock):
    paying_customer("user-twice", "cus_twice", status="past_due")
    GracePeriodFactory(user_id="user-twice", ends_at=frozen_clock.now + timedelta(days=2))
    failed = event(
        "invoice.payment_failed",
        invoice(customer="cus_twice", subscription="sub_twice"),
        event_id="evt_f2",
        created=frozen_clock.now,
    )
    assert deliver(client, failed, now=frozen_clock.now).get_json()["status"] == "processed"
    [grace] = tx.scalars(select(GracePeriod).where(GracePeriod.user_id == "user-twice")).all()
    assert (grace.status, grace.ends_at) == ("active", frozen_clock.now + timedelta(days=2))
    assert rows(tx, AuditEntry, AuditEntry.action == "grace.start") == 0


def test_a_failed_payment_starts_grace_of_the_configured_length(client, tx, app, frozen_clock, monkeypatch):
    monkeypatch.setitem(app.config, "GRACE_PERIOD_DAYS", 3)
    paying_customer("user-three", "cus_three")
    failed = event(
        "invoice.payment_failed",
        invoice(customer="cus_three", subscription="sub_three"),
        event_id="evt_f3",
        created=frozen_clock.now,
    )
    deliver(client, failed, now=frozen_clock.now)
    grace = tx.scalar(select(GracePeriod).where(GracePeriod.user_id == "user-three"))
    assert grace.ends_at == frozen_clock.now + timedelta(days=3)


def test_a_second_active_grace_period_fails_the_event_clearly_and_changes_nothing(
    client, tx, frozen_clock, monkeypatch
):
    """Should a handler ever miss the active grace period (as one not locking the customer could, in a race), the
    database still refuses a second one: the event fails with a clear error, to be retried, and nothing changes."""
    paying_customer("user-clash", "cus_clash")
    GracePeriodFactory(user_id="user-clash", ends_at=frozen_clock.now + timedelta(days=2))
    monkeypatch.setattr(grace, "active_grace_for_update", lambda session, user_id: None)
    failed = invoice(customer="cus_clash", subscription="sub_clash")
    document = event("invoice.payment_failed", failed, event_id="evt_clash", created=frozen_clock.now)
    audits = rows(tx, AuditEntry)
    assert deliver(client, document, now=frozen_clock.now).get_json()["status"] == "failed"
    assert stored(tx, "evt_clash").last_error == (
        "Another change started a grace period for user-clash at the same moment; try again."
    )
    assert tx.scalar(select(Subscription.status).where(Subscription.user_id == "user-clash")) == "active"
    assert rows(tx, GracePeriod) == 1 and rows(tx, AuditEntry) == audits
