"""A grace reset and a failed payment for one user at the same moment: one grace period, both applied, no error.

Each of them starts the user's one active grace period if there is none. They serialise on the user's customer row
(the one row every user has, locked first by both), so the second waits, then sees the first's grace period and
extends it (the reset) or leaves it alone (the webhook). The test holds the first inside its transaction, with its
locks, until the second waits for them: on PostgreSQL pg_stat_activity shows that wait; SQLite has one writer at a
time, so there the second simply queues. Real commits from two connections need a database of their own.
"""

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from app import clock
from app.extensions import db
from app.models import AuditEntry, BillingEvent, Customer, GracePeriod, Subscription, SubscriptionStatus
from app.services import audit, grace, handlers, keys
from app.services.actor import Actor
from tests.concurrency import held, migrated_app, run_first_then_second
from tests.webhooks import SECRET, WEBHOOK_URL, event, invoice, sign

RESET_URL = "/v1/admin/billing/grace-period/reset"


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
