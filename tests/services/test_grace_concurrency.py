"""A grace reset and a failed payment for one user at the same moment: one grace period, both applied, no error.

Each of them starts the user's one active grace period if there is none. They serialise on the user's customer row
(the one row every user has, locked first by both), so the second waits, then sees the first's grace period and
extends it (the reset) or leaves it alone (the webhook). The test holds the first inside its transaction, with its
locks, until the second waits for them: on PostgreSQL pg_stat_activity shows that wait; SQLite has one writer at a
time, so there the second simply queues. Real commits from two connections need a database of their own.
"""

import json
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from app import clock
from app.extensions import db
from app.models import AuditEntry, BillingEvent, Customer, GracePeriod, Subscription, SubscriptionStatus
from app.services import audit, grace, handlers, keys
from app.services.actor import Actor
from tests.concurrency import migrated_app
from tests.webhooks import SECRET, WEBHOOK_URL, event, invoice, sign

RESET_URL = "/v1/admin/billing/grace-period/reset"
WAIT = 60  # seconds before a test gives up on a thread that never gets there (a hang, not a timing assumption)


@pytest.fixture
def own_app(test_env, own_database, frozen_clock):
    """A fresh database holding user-race (with a subscription, no grace period) and a support key."""
    with migrated_app(test_env, own_database, WEBHOOK_SECRETS=[SECRET]) as app:
        with app.app_context():
            db.session.add(Customer(user_id="user-race", provider_customer_id="cus_race"))
            db.session.add(
                Subscription(
                    user_id="user-race",
                    plan="pro",
                    status=SubscriptionStatus.ACTIVE,
                    credits=5,
                    provider_subscription_id="sub_race",
                )
            )
            db.session.commit()
            secret = keys.create_key("tooling", "support", actor=Actor.cli("test"), now=clock.utcnow()).secret
            db.session.remove()
        yield app, secret


def held(monkeypatch, module, name: str) -> tuple[threading.Event, threading.Event]:
    """Make `module.name` stop, once it has returned, until released: (it got there, release it)."""
    real, there, release = getattr(module, name), threading.Event(), threading.Event()

    def holding(*args, **kwargs):
        result = real(*args, **kwargs)
        there.set()
        assert release.wait(WAIT), f"{name} was never released"
        return result

    monkeypatch.setattr(module, name, holding)
    return there, release


def wait_until_someone_waits_for_a_lock(app) -> None:
    """Return once a connection to the test's database waits for a lock (PostgreSQL; on SQLite at once)."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            return
        waiting = text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        deadline = time.monotonic() + WAIT
        while not db.session.scalar(waiting):
            db.session.rollback()
            assert time.monotonic() < deadline, "the second transaction never waited for the first one's locks"
            time.sleep(0.01)  # polling a condition, not timing: the order is set by the locks
        db.session.remove()


def reset(app, secret, results):
    response = app.test_client().post(
        RESET_URL,
        json={"user_id": "user-race", "days": 14, "reason": "customer asked for time"},
        headers={"X-Admin-Key": secret},
    )
    results["reset"] = (response.status_code, response.get_json())


def payment_failed(app, results):
    now = clock.utcnow()
    raw = json.dumps(
        event(
            "invoice.payment_failed",
            invoice(customer="cus_race", subscription="sub_race"),
            event_id="evt_race_failed",
            created=now,
        )
    ).encode()
    response = app.test_client().post(
        WEBHOOK_URL, data=raw, headers={"Stripe-Signature": sign(raw, timestamp=int(now.timestamp()))}
    )
    results["webhook"] = response.get_json()["status"]


def run_first_then_second(app, first, second, there, release) -> None:
    """Start `first`, and once it holds its locks (`there`) start `second`; release `first` once `second` waits."""
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert there.wait(WAIT), "the first transaction never got its locks"
    threads[1].start()
    wait_until_someone_waits_for_a_lock(app)
    release.set()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)


def stored(app):
    """The user's grace periods, the audited actions for the user, the event's status, and the chain's health."""
    with app.app_context():
        graces = db.session.execute(select(GracePeriod.status, GracePeriod.reset_count, GracePeriod.ends_at)).all()
        actions = db.session.scalars(
            select(AuditEntry.action).where(AuditEntry.user_id == "user-race").order_by(AuditEntry.id)
        ).all()
        event_status = db.session.scalar(select(BillingEvent.status))
        status = db.session.scalar(select(Subscription.status))
        intact = audit.verify_chain().ok
        db.session.remove()
    return graces, actions, event_status, status, intact


def test_a_reset_waiting_for_a_failed_payment_extends_the_grace_period_it_started(own_app, monkeypatch, frozen_clock):
    app, secret = own_app
    there, release = held(monkeypatch, handlers, "lock_target")  # the webhook holds the user's locks
    results = {}
    run_first_then_second(
        app, lambda: payment_failed(app, results), lambda: reset(app, secret, results), there, release
    )

    status, body = results["reset"]
    assert status == 200, body
    assert body["grace_period"]["reset_count"] == 1
    assert results["webhook"] == "processed"
    ends = frozen_clock.now + timedelta(days=14)  # later than the webhook's GRACE_PERIOD_DAYS: extended to it
    assert stored(app) == (
        [("active", 1, ends)],
        ["subscription.update", "grace.start", "grace.reset"],
        "processed",
        "past_due",
        True,
    )


def test_a_failed_payment_waiting_for_a_reset_leaves_its_grace_period_alone(own_app, monkeypatch, frozen_clock):
    app, secret = own_app
    there, release = held(monkeypatch, grace, "plan_grace_reset")  # the reset holds the user's locks
    results = {}
    run_first_then_second(
        app, lambda: reset(app, secret, results), lambda: payment_failed(app, results), there, release
    )

    status, body = results["reset"]
    assert status == 200, body
    assert results["webhook"] == "processed"
    assert stored(app) == (
        [("active", 1, frozen_clock.now + timedelta(days=14))],
        ["grace.reset", "subscription.update"],
        "processed",
        "past_due",
        True,
    )
