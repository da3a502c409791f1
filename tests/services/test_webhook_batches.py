"""Due retries and replays run many events per transaction (docs/architecture.md, "Webhook batches"), on the
suite's rolled-back transaction: each handler still fails alone, and results and audit rows are as one event per
transaction wrote them."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from app.models import AuditEntry, BillingEvent, EventAttempt, EventStatus, Subscription
from app.services import audit, grace, handlers, webhooks
from tests.factories import CustomerFactory, PlanFactory, SubscriptionFactory
from tests.webhooks import PRICE, event, invoice, subscription


@pytest.fixture
def users(tx):
    """user-a, user-b and user-c (provider customers cus_a, cus_b, cus_c), each with an active subscription."""
    PlanFactory(code="starter-test", provider_price_id=PRICE)
    for name in "abc":
        CustomerFactory(user_id=f"user-{name}", provider_customer_id=f"cus_{name}")
        SubscriptionFactory(user_id=f"user-{name}", provider_subscription_id=f"sub_{name}")


def store(tx, document, *, status=EventStatus.FAILED, due_at=None):
    """`document` as a stored event that failed once (its retry due at `due_at`), or processed."""
    tx.add(
        BillingEvent(
            event_id=document["id"],
            type=document["type"],
            payload=document,
            status=status,
            attempts=1,
            last_error="boom" if status is EventStatus.FAILED else None,
            next_retry_at=due_at,
            created_at=datetime.fromtimestamp(document["created"], UTC),
        )
    )
    tx.commit()


def past_due(frozen_clock, name):
    """customer.subscription.updated: user-`name`'s subscription is now past due."""
    obj = subscription(
        sub_id=f"sub_{name}",
        customer=f"cus_{name}",
        user_id=f"user-{name}",
        status="past_due",
        price=PRICE,
        period_end=frozen_clock.now + timedelta(days=30),
    )
    return event("customer.subscription.updated", obj, event_id=f"evt_{name}", created=frozen_clock.now)


def payment_failed(frozen_clock, name):
    document = invoice(customer=f"cus_{name}", subscription=f"sub_{name}")
    return event("invoice.payment_failed", document, event_id=f"evt_{name}", created=frozen_clock.now)


def ignored(frozen_clock, event_id):
    """An event of a type billops does not handle: its handler runs no statement."""
    return event("customer.updated", {"id": "cus_x", "object": "customer"}, event_id=event_id, created=frozen_clock.now)


def add_due(tx, frozen_clock, documents):
    for document in documents:
        store(tx, document, due_at=frozen_clock.now - timedelta(minutes=1))


def audit_rows(tx):
    return tx.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()


def test_a_failing_handler_rolls_back_its_own_effects_and_audit_rows_only(tx, users, frozen_clock, monkeypatch):
    def grace_store_down(*_args, **_kwargs):
        raise RuntimeError("grace store unavailable")

    # user-b's handler writes its subscription and a subscription.update audit row, then fails.
    monkeypatch.setattr(grace, "start_grace", grace_store_down)
    add_due(
        tx, frozen_clock, [past_due(frozen_clock, "a"), payment_failed(frozen_clock, "b"), past_due(frozen_clock, "c")]
    )
    audited = len(audit_rows(tx))

    results = webhooks.drain_due(grace_days=7, now=frozen_clock.now)

    assert [(r.event_id, r.status, r.error) for r in results] == [
        ("evt_a", "processed", None),
        ("evt_b", "failed", "RuntimeError: grace store unavailable"),
        ("evt_c", "processed", None),
    ]
    statuses = dict(tx.execute(select(Subscription.user_id, Subscription.status)).all())
    assert statuses == {"user-a": "past_due", "user-b": "active", "user-c": "past_due"}
    failed = tx.scalar(select(BillingEvent).where(BillingEvent.event_id == "evt_b"))
    assert (failed.status, failed.attempts, failed.last_error) == ("failed", 2, "RuntimeError: grace store unavailable")
    assert failed.next_retry_at == frozen_clock.now + webhooks.RETRY_DELAYS[1]
    attempts = tx.execute(select(BillingEvent.event_id, EventAttempt.trigger, EventAttempt.outcome).join(EventAttempt))
    assert sorted(attempts) == [
        ("evt_a", "retry", "processed"),
        ("evt_b", "retry", "failed"),
        ("evt_c", "retry", "processed"),
    ]
    written = audit_rows(tx)[audited:]
    assert [(e.action, e.user_id, e.actor) for e in written] == [
        ("subscription.update", "user-a", "webhook:evt_a"),
        ("subscription.update", "user-c", "webhook:evt_c"),
    ]
    assert written[1].id == written[0].id + 1 and written[1].prev_hash == written[0].hash
    assert audit.verify_chain().ok


def test_a_replay_batch_writes_the_results_and_audit_rows_of_one_event_at_a_time(tx, users, frozen_clock, cli_actor):
    store(tx, ignored(frozen_clock, "evt_done"), status=EventStatus.PROCESSED)
    add_due(tx, frozen_clock, [past_due(frozen_clock, "a"), ignored(frozen_clock, "evt_other")])
    audited = len(audit_rows(tx))

    report = webhooks.replay_events(
        event_ids=["evt_a", "evt_done", "evt_other"],
        reason="handler fixed",
        actor=cli_actor,
        grace_days=7,
        now=frozen_clock.now,
    )

    # In the order asked for (evt_done is the oldest row), each as a transaction of its own would have ended.
    assert [(r.event_id, r.status, r.error) for r in report.results] == [
        ("evt_a", "processed", None),
        ("evt_done", "processed", None),
        ("evt_other", "ignored", "ignored: billops does not handle customer.updated events"),
    ]
    written = audit_rows(tx)[audited:]
    assert [(e.action, e.actor, e.user_id, e.reason) for e in written] == [
        ("subscription.update", "webhook:evt_a", "user-a", "customer.subscription.updated evt_a"),
        ("webhook.replay", "test-operator", "user-a", "handler fixed"),
        ("webhook.replay", "test-operator", None, "handler fixed"),
        ("webhook.replay", "test-operator", None, "handler fixed"),
    ]
    assert (written[0].before["status"], written[0].after["status"]) == ("active", "past_due")
    assert [(e.before, e.after) for e in written[1:]] == [
        (
            {"event_id": "evt_a", "status": "failed", "attempts": 1},
            {"event_id": "evt_a", "status": "processed", "error": None},
        ),
        (
            {"event_id": "evt_done", "status": "processed", "attempts": 1},
            {"event_id": "evt_done", "status": "processed", "error": None},
        ),
        (
            {"event_id": "evt_other", "status": "failed", "attempts": 1},
            {"event_id": "evt_other", "status": "ignored", "error": None},
        ),
    ]
    assert {e.context["channel"] for e in written} == {"cli"}
    done = tx.scalar(select(BillingEvent).where(BillingEvent.event_id == "evt_done"))
    assert "applies nothing twice" in done.attempt_history[-1].error and done.attempts == 2
    assert audit.verify_chain().ok


def test_a_batch_that_fails_outside_the_savepoints_runs_again_one_event_per_transaction(tx, frozen_clock, monkeypatch):
    add_due(tx, frozen_clock, [ignored(frozen_clock, f"evt_{n}") for n in range(3)])
    save, batches = webhooks._save, []

    def save_failing_first(session, attempts, now):
        batches.append([attempt.event_id for attempt in attempts])
        if len(batches) == 1:
            raise RuntimeError("the connection dropped")
        save(session, attempts, now)

    monkeypatch.setattr(webhooks, "_save", save_failing_first)
    results = webhooks.drain_due(grace_days=7, now=frozen_clock.now)

    assert batches == [["evt_0", "evt_1", "evt_2"], ["evt_0"], ["evt_1"], ["evt_2"]]
    assert [(r.event_id, r.status) for r in results] == [(f"evt_{n}", "ignored") for n in range(3)]
    assert sorted(tx.scalars(select(EventAttempt.trigger))) == ["retry"] * 3
    assert set(tx.scalars(select(BillingEvent.attempts))) == {2}


class _Deadlock(Exception):
    sqlstate = "40P01"  # what psycopg's DeadlockDetected carries


def test_a_deadlock_in_a_handler_reruns_its_batch_one_event_per_transaction(tx, frozen_clock, monkeypatch):
    """A lost lock race says nothing about the event: it is not recorded as the event's failure."""
    add_due(tx, frozen_clock, [ignored(frozen_clock, f"evt_{n}") for n in range(3)])
    handle, handled = handlers.handle, []

    def deadlock_on_second(session, event, ctx):
        handled.append(event.event_id)
        if len(handled) == 2:
            raise OperationalError("SELECT ... FOR UPDATE", {}, _Deadlock())
        return handle(session, event, ctx)

    monkeypatch.setattr(handlers, "handle", deadlock_on_second)
    results = webhooks.drain_due(grace_days=7, now=frozen_clock.now)

    assert handled == ["evt_0", "evt_1", "evt_0", "evt_1", "evt_2"]
    assert [(r.event_id, r.status) for r in results] == [(f"evt_{n}", "ignored") for n in range(3)]
    assert len(tx.scalars(select(EventAttempt)).all()) == 3
