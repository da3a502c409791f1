"""`billing bench-data`: bulk, deterministic, idempotent benchmark data whose audit rows form a valid chain."""

from sqlalchemy import func, select

from app.models import AuditEntry, BillingEvent, Customer, Subscription
from app.models.events import EventAttempt
from app.services import audit, benchdata, evidence, reconcile
from app.services.handlers import SUBSCRIPTION_EVENT_TYPES, implied_by
from tests.factories import CustomerFactory


def bench(runner, *args):
    return runner.invoke(args=["billing", "bench-data", *args], catch_exceptions=False)


def count(tx, column):
    return tx.scalar(select(func.count(column)))


def test_bench_data_fills_every_table_once_with_a_valid_audit_chain(runner, tx):
    first = bench(runner, "--events", "60", "--subscriptions", "12")
    assert first.exit_code == 0, first.output
    assert "customers added: 12" in first.output and "events added: 60" in first.output
    assert (count(tx, Customer.id), count(tx, Subscription.id), count(tx, BillingEvent.id)) == (12, 12, 60)
    assert count(tx, EventAttempt.id) == 60
    audit_rows = count(tx, AuditEntry.id)
    assert audit_rows >= 12
    again = bench(runner, "--events", "60", "--subscriptions", "12")
    assert "events added: 0" in again.output and "customers added: 0" in again.output
    assert (count(tx, BillingEvent.id), count(tx, AuditEntry.id)) == (60, audit_rows)
    assert audit.verify_chain().ok


def test_bench_events_are_real_shaped_and_name_bench_users(runner, tx):
    bench(runner, "--events", "40", "--subscriptions", "5")
    events = tx.scalars(select(BillingEvent)).all()
    users = set(tx.scalars(select(Customer.user_id)))
    for event in events:
        assert event.payload["id"] == event.event_id and event.payload["type"] == event.type
        assert event.payload["object"] == "event" and "object" in event.payload["data"]
        assert event.user_id is None or event.user_id in users
    subscription_events = [e for e in events if e.type.startswith("customer.subscription.")]
    assert subscription_events
    obj = subscription_events[0].payload["data"]["object"]
    assert obj["metadata"]["user_id"] == subscription_events[0].user_id and obj["id"].startswith("sub_bench")


def test_bench_data_keeps_the_evidence_applying_its_processed_events_in_order_would_leave(runner, tx):
    bench(runner, "--events", "80", "--subscriptions", "5")
    events = tx.scalars(select(BillingEvent).order_by(BillingEvent.processed_at, BillingEvent.id)).all()
    expected = {}
    for event in events:
        if event.status == "processed" and event.type in SUBSCRIPTION_EVENT_TYPES:
            implied = implied_by(event.type, event.payload)
            for name in evidence.FIELDS:
                if getattr(implied, name) is not None:
                    expected[event.user_id, name] = (getattr(implied, name), event.event_id)
    kept = {
        (user, kept.field): (kept.value, kept.event.event_id)
        for user, document in tx.execute(select(Customer.user_id, Customer.evidence))
        for kept in evidence.fields(document)
    }
    assert kept == expected
    assert {name for _, name in expected} == set(evidence.FIELDS)


def test_bench_data_refuses_a_database_with_real_customers_unless_forced(runner, tx):
    CustomerFactory(user_id="user-real")
    refused = bench(runner, "--events", "5", "--subscriptions", "2")
    assert refused.exit_code == 1 and "not bench data" in refused.output
    assert count(tx, BillingEvent.id) == 0
    forced = bench(runner, "--events", "5", "--subscriptions", "2", "--force")
    assert forced.exit_code == 0 and count(tx, BillingEvent.id) == 5


def test_a_larger_run_adds_only_the_missing_tail(runner, tx):
    bench(runner, "--events", "7", "--subscriptions", "4")
    first = dict(tx.execute(select(BillingEvent.event_id, BillingEvent.payload)).tuples().all())
    grown = bench(runner, "--events", "20", "--subscriptions", "4")
    assert "events added: 13" in grown.output
    after = dict(tx.execute(select(BillingEvent.event_id, BillingEvent.payload)).tuples().all())
    assert sorted(after) == [f"evt_bench_{n:09d}" for n in range(20)]
    assert {key: after[key] for key in first} == first
    assert audit.verify_chain().ok


def test_bench_subscriptions_agree_with_their_events_but_one_in_a_hundred(runner, tx):
    first = bench(runner, "--events", "400", "--subscriptions", "100")
    assert "subscriptions set to what their events imply: 0" not in first.output
    users = [benchdata.user_id(index) for index in range(100)]
    assert set(reconcile.event_fixes(tx, users)) == {benchdata.user_id(99)}
    again = bench(runner, "--events", "400", "--subscriptions", "100")
    assert "subscriptions set to what their events imply: 0" in again.output
