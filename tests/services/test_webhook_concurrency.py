"""Real concurrency and real crashes, in a database of the test's own (see `own_database`).

Threads and processes commit for real here, outside the suite's rolled-back transaction.
"""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.config import PROJECT_ROOT
from app.extensions import db
from app.models import (
    AuditEntry,
    BillingEvent,
    Customer,
    EventAttempt,
    EventStatus,
    GracePeriod,
    Subscription,
    SubscriptionStatus,
)
from app.services import audit, handlers, webhooks
from tests.concurrency import held, migrated_app, run_first_then_second, run_together
from tests.webhooks import SECRET, event, fixture, invoice, sign


@pytest.fixture
def own_app(test_env, own_database):
    with migrated_app(test_env, own_database, WEBHOOK_SECRETS=[SECRET]) as app:
        yield app


def count(model, *where):
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def test_twenty_concurrent_duplicates_store_one_row_with_one_effect(own_app):
    with own_app.app_context():
        db.session.add(Customer(user_id="user-dup", provider_customer_id="cus_dup"))
        db.session.add(Subscription(user_id="user-dup", plan="pro", status=SubscriptionStatus.ACTIVE, credits=5))
        db.session.commit()
    now = datetime.now(UTC)
    document = event(
        "invoice.payment_failed", invoice(customer="cus_dup", subscription="sub_dup"), event_id="evt_dup20", created=now
    )
    raw = json.dumps(document).encode()
    header = sign(raw, timestamp=int(now.timestamp()))
    statuses = []

    def post(_n):
        resp = own_app.test_client().post("/v1/billing/webhooks", data=raw, headers={"Stripe-Signature": header})
        statuses.append((resp.status_code, resp.get_json()["duplicate"]))

    assert run_together(own_app, post, 20) == []
    assert sorted(statuses) == [(200, False)] + [(200, True)] * 19
    with own_app.app_context():
        assert count(BillingEvent) == 1 and count(EventAttempt) == 1
        assert db.session.scalar(select(BillingEvent.status)) == "processed"
        assert count(GracePeriod) == 1
        assert count(AuditEntry, AuditEntry.action == "subscription.update") == 1
        assert count(AuditEntry, AuditEntry.action == "grace.start") == 1


def add_due(documents, now):
    """The documents as stored events whose first attempt failed, their retry due at `now`."""
    for document in documents:
        db.session.add(
            BillingEvent(
                event_id=document["id"],
                type=document["type"],
                payload=document,
                status=EventStatus.FAILED,
                attempts=1,
                next_retry_at=now - timedelta(minutes=1),
                created_at=datetime.fromtimestamp(document["created"], UTC),
            )
        )
    db.session.commit()


def add_past_due_users(numbers) -> None:
    """user-N (provider customer cus_N) with a past-due subscription sub_N, for each N."""
    for n in numbers:
        db.session.add(Customer(user_id=f"user-{n}", provider_customer_id=f"cus_{n}"))
        db.session.add(
            Subscription(
                user_id=f"user-{n}",
                plan="pro",
                status=SubscriptionStatus.PAST_DUE,
                credits=5,
                provider_subscription_id=f"sub_{n}",
            )
        )


def add_due_invoices(customers: list[str], now) -> None:
    """Due `invoice.paid` events evt_paid_0, 1, ... of the customers' subscriptions, claimed in this order."""
    add_due(
        [
            event(
                "invoice.paid",
                invoice(customer=customer, subscription=customer.replace("cus_", "sub_")),
                event_id=f"evt_paid_{n}",
                created=now - timedelta(minutes=len(customers) - n),
            )
            for n, customer in enumerate(customers)
        ],
        now,
    )


def drain_with_two_workers(app, now) -> list[str]:
    """The event ids two workers draining at once ran, sorted."""
    runs = []
    assert run_together(app, lambda _n: runs.extend(webhooks.drain_due(grace_days=7, now=now)), 2) == []
    return sorted(result.event_id for result in runs)


def test_two_concurrent_workers_never_process_one_event_twice(own_app):
    now = datetime.now(UTC)
    with own_app.app_context():
        add_due([{"id": f"evt_due_{n}", "type": "customer.updated", "created": 0} for n in range(30)], now)
    assert drain_with_two_workers(own_app, now) == sorted(f"evt_due_{n}" for n in range(30))
    with own_app.app_context():
        assert count(EventAttempt) == 30
        assert set(db.session.scalars(select(BillingEvent.attempts))) == {2}


def test_two_workers_draining_small_batches_of_shared_users_run_each_event_once(own_app, monkeypatch):
    """Batches of 4 due invoices over 4 users, in opposite user orders: two workers' batches lock the same
    subscriptions in different orders (a deadlock reruns the loser's batch one event per transaction)."""
    monkeypatch.setattr(webhooks, "BATCH_SIZE", 4)
    now = datetime.now(UTC)
    with own_app.app_context():
        add_past_due_users(range(4))
        add_due_invoices([f"cus_{n % 4 if n // 4 % 2 else 3 - n % 4}" for n in range(40)], now)
    assert drain_with_two_workers(own_app, now) == sorted(f"evt_paid_{n}" for n in range(40))
    with own_app.app_context():
        assert count(EventAttempt) == 40
        assert set(db.session.scalars(select(BillingEvent.attempts))) == {2}
        assert set(db.session.scalars(select(Subscription.status))) == {"active"}
        assert audit.verify_chain().ok


def test_two_batches_lock_the_customers_they_share_in_one_order_instead_of_deadlocking(own_app, monkeypatch, caplog):
    """Worker A claims invoices of cus_2 then cus_1, worker B of cus_1 then cus_2. Each batch runs its events in
    customer order, so while A holds cus_1, B waits for it (rather than taking cus_2 for A to wait on in turn)."""
    now = datetime.now(UTC)
    with own_app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("SQLite runs one batch at a time: its claim takes the database's write lock")
        add_past_due_users((1, 2))
        add_due_invoices(["cus_2", "cus_1", "cus_1", "cus_2"], now)  # A claims the first two, B the rest
    there, release = held(monkeypatch, handlers, "lock_target")  # A stops once it holds its first customer
    ran = {}

    def drain(worker: str) -> None:
        with own_app.app_context():
            ran[worker] = [result.event_id for result in webhooks.drain_due(grace_days=7, now=now, limit=2)]
            db.session.remove()

    run_first_then_second(own_app, lambda: drain("A"), lambda: drain("B"), there, release)

    assert ran == {"A": ["evt_paid_0", "evt_paid_1"], "B": ["evt_paid_2", "evt_paid_3"]}
    assert "lost a lock race" not in caplog.text
    with own_app.app_context():
        assert count(EventAttempt) == 4 and set(db.session.scalars(select(BillingEvent.status))) == {"processed"}
        assert set(db.session.scalars(select(Subscription.status))) == {"active"}
        assert audit.verify_chain().ok


_CRASH_AFTER_COMMIT = """
import os, sys
from app import create_app
from app.config import TestConfig
from app.services import webhooks

# The process dies between the commit of the stored event and its handler, as a killed gunicorn worker would.
webhooks.process_received = lambda *args, **kwargs: os._exit(3)
app = create_app(TestConfig(WEBHOOK_SECRETS=[os.environ["SECRET"]]))
headers = {"Stripe-Signature": os.environ["SIG"]}
app.test_client().post("/v1/billing/webhooks", data=sys.stdin.buffer.read(), headers=headers)
os._exit(0)
"""


def subprocess_env(own_database, **extra):
    urls = {"TEST_DATABASE_URL": own_database, "DATABASE_URL": own_database}
    # FLASK_SKIP_DOTENV: the suite's settings, not those of a `make run` .env in the checkout
    return {**os.environ, **urls, "BILLOPS_ENV": "development", "FLASK_SKIP_DOTENV": "1", **extra}


def test_an_event_stranded_by_a_killed_process_is_claimed_by_the_worker_after_a_minute(own_app, own_database):
    document = fixture("event")  # plan.created: its handler marks the catalog stale
    document["created"] = int(time.time())
    raw = json.dumps(document).encode()
    env = subprocess_env(own_database, SECRET=SECRET, SIG=sign(raw, timestamp=int(time.time())))
    crashed = subprocess.run(
        [sys.executable, "-c", _CRASH_AFTER_COMMIT],
        input=raw,
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        timeout=120,
    )
    assert crashed.returncode == 3, crashed.stderr.decode()[-2000:]
    with own_app.app_context():
        stranded = db.session.scalar(select(BillingEvent))
        assert (stranded.status, stranded.attempts) == ("received", 0)
        received_at = stranded.received_at
        assert webhooks.drain_due(grace_days=7, now=received_at + timedelta(seconds=59)) == []
        [result] = webhooks.drain_due(grace_days=7, now=received_at + timedelta(seconds=61))
        assert (result.event_id, result.status) == (document["id"], "processed")
        assert [a.trigger for a in db.session.scalars(select(EventAttempt))] == ["receive"]


def test_the_worker_finishes_its_batch_and_exits_0_on_sigterm(own_app, own_database):
    worker = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "billing", "worker"],
        env=subprocess_env(own_database),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert b"retry worker running" in worker.stderr.readline()
        worker.send_signal(signal.SIGTERM)
        _out, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err.decode()[-2000:]
    assert b"retry worker stopped" in err
