"""WEBHOOK_PROCESSING=queue: the receiver stores and acknowledges; the worker processes (docs/webhooks.md)."""

import pytest
from sqlalchemy import func, select

from app.models import AuditEntry, BillingEvent, EventAttempt, GracePeriod, Subscription
from app.retry_worker import RetryWorker
from tests.factories import CustomerFactory, PlanFactory, SubscriptionFactory
from tests.webhooks import PRICE, deliver, event, invoice, sign, subscription


@pytest.fixture
def queue_client(webhook_app, tx, monkeypatch):
    monkeypatch.setitem(webhook_app.config, "WEBHOOK_PROCESSING", "queue")
    return webhook_app.test_client()


def rows(tx, model, *where):
    return tx.scalar(select(func.count()).select_from(model).where(*where))


def stored(tx, event_id):
    return tx.scalar(
        select(BillingEvent).where(BillingEvent.event_id == event_id).execution_options(populate_existing=True)
    )


def new_subscription(clock, event_id):
    obj = subscription(
        sub_id="sub_q0001", customer="cus_q0001", user_id="user-q", status="active", price=PRICE, period_end=clock.now
    )
    return event("customer.subscription.created", obj, event_id=event_id, created=clock.now)


def test_a_queued_delivery_is_stored_due_now_and_not_processed(queue_client, tx, frozen_clock):
    resp = deliver(queue_client, new_subscription(frozen_clock, "evt_q"), now=frozen_clock.now)
    assert resp.status_code == 200
    assert resp.get_json() == {"event_id": "evt_q", "status": "received", "duplicate": False}
    row = stored(tx, "evt_q")
    assert (row.status, row.attempts, row.next_retry_at, row.processed_at) == ("received", 0, frozen_clock.now, None)
    assert rows(tx, EventAttempt) == 0 and rows(tx, AuditEntry) == 0 and rows(tx, Subscription) == 0


def test_a_duplicate_queued_delivery_is_stored_once_and_processed_once(queue_client, tx, frozen_clock):
    PlanFactory(code="starter-test", provider_price_id=PRICE)
    document = new_subscription(frozen_clock, "evt_q")
    deliver(queue_client, document, now=frozen_clock.now)
    again = deliver(queue_client, document, now=frozen_clock.now)
    assert again.status_code == 200
    assert again.get_json() == {"event_id": "evt_q", "status": "received", "duplicate": True}
    assert rows(tx, BillingEvent) == 1

    assert [result.status for result in RetryWorker(grace_days=7).drain().events] == ["processed"]
    late = deliver(queue_client, document, now=frozen_clock.now)
    assert late.get_json() == {"event_id": "evt_q", "status": "processed", "duplicate": True}
    assert RetryWorker(grace_days=7).drain().events == []
    assert rows(tx, BillingEvent) == 1 and rows(tx, EventAttempt) == 1


def test_a_badly_signed_delivery_is_refused_in_queue_mode_too(queue_client, tx, frozen_clock):
    document = new_subscription(frozen_clock, "evt_q")
    wrong = sign(b"{}", timestamp=int(frozen_clock.now.timestamp()))  # another body's signature
    resp = deliver(queue_client, document, now=frozen_clock.now, body=b'{"id": "evt_q"}')  # signed, bad JSON event
    assert resp.status_code == 400 and resp.get_json()["code"] == "invalid_json"
    resp = queue_client.post("/v1/billing/webhooks", json=document, headers={"Stripe-Signature": wrong})
    assert resp.status_code == 400 and resp.get_json()["code"] == "invalid_signature"
    assert rows(tx, BillingEvent) == 0


@pytest.mark.parametrize(
    "mode, trigger, channel", [("inline", "receive", "api"), ("queue", "receive", "worker")], ids=["inline", "queue"]
)
def test_the_worker_applies_a_queued_event_as_the_receiver_applies_it_inline(
    webhook_app, tx, frozen_clock, monkeypatch, mode, trigger, channel
):
    monkeypatch.setitem(webhook_app.config, "WEBHOOK_PROCESSING", mode)
    CustomerFactory(user_id="user-g", provider_customer_id="cus_g")
    SubscriptionFactory(user_id="user-g", status="active", provider_subscription_id="sub_g")
    bill = invoice(customer="cus_g", subscription="sub_g")
    failed = event("invoice.payment_failed", bill, event_id="evt_f", created=frozen_clock.now)
    answer = deliver(webhook_app.test_client(), failed, now=frozen_clock.now).get_json()
    assert answer["status"] == ("processed" if mode == "inline" else "received")

    ran = [(result.event_id, result.status) for result in RetryWorker(grace_days=7).drain().events]
    assert ran == ([] if mode == "inline" else [("evt_f", "processed")])
    row = stored(tx, "evt_f")
    assert (row.status, row.attempts, row.next_retry_at, row.processed_at) == ("processed", 1, None, frozen_clock.now)
    assert [(a.trigger, a.outcome) for a in row.attempt_history] == [(trigger, "processed")]
    assert tx.scalar(select(Subscription.status).where(Subscription.user_id == "user-g")) == "past_due"
    assert tx.scalar(select(GracePeriod.status).where(GracePeriod.user_id == "user-g")) == "active"
    entries = tx.scalars(select(AuditEntry).where(AuditEntry.actor == "webhook:evt_f").order_by(AuditEntry.id))
    assert [(e.action, e.user_id, e.context["channel"], e.after["status"]) for e in entries] == [
        ("subscription.update", "user-g", channel, "past_due"),
        ("grace.start", "user-g", channel, "active"),
    ]
