"""The retry schedule, the worker's claims and its grace expiry, on the suite's rolled-back transaction."""

import json
from datetime import timedelta

from sqlalchemy import func, select

from app.models import AdminKey, AuditEntry, BillingEvent, GracePeriod, IdempotencyKey, Role
from app.retry_worker import RetryWorker
from app.services import idempotency, keys, webhooks
from app.services.actor import Actor, Channel
from app.services.keys import hash_secret
from tests.factories import CustomerFactory, GracePeriodFactory, SubscriptionFactory
from tests.webhooks import SECRET, event, invoice, sign


def receive_unknown_customer_invoice(now):
    document = event(
        "invoice.paid", invoice(customer="cus_nobody", subscription="sub_nobody"), event_id="evt_retry", created=now
    )
    raw = json.dumps(document).encode()
    return webhooks.receive(raw, sign(raw, timestamp=int(now.timestamp())), secrets=[SECRET], grace_days=7, now=now)


def test_a_failing_event_is_retried_on_the_schedule_then_dead(tx, frozen_clock):
    start = frozen_clock.now
    assert receive_unknown_customer_invoice(start).status == "failed"
    row = tx.scalar(select(BillingEvent))
    waits = []
    while row.status == "failed":
        assert webhooks.drain_due(grace_days=7, now=row.next_retry_at - timedelta(seconds=1)) == []  # not due yet
        waits.append(row.next_retry_at - frozen_clock.now)
        frozen_clock.now = row.next_retry_at
        assert len(webhooks.drain_due(grace_days=7, now=frozen_clock.now)) == 1
        tx.refresh(row)
    assert waits == list(webhooks.RETRY_DELAYS)
    assert (row.status, row.attempts, row.next_retry_at) == ("dead", len(webhooks.RETRY_DELAYS) + 1, None)
    assert timedelta(days=2.5) < frozen_clock.now - start < timedelta(days=3.5)
    assert "No customer is known for cus_nobody" in row.last_error
    assert [a.trigger for a in row.attempt_history] == ["receive"] + ["retry"] * len(webhooks.RETRY_DELAYS)
    assert row.attempt_history[-1].outcome == "dead"
    assert webhooks.drain_due(grace_days=7, now=frozen_clock.now + timedelta(days=30)) == []


def test_the_worker_expires_grace_periods_whose_end_passed(tx, frozen_clock):
    GracePeriodFactory(user_id="user-late", ends_at=frozen_clock.now - timedelta(seconds=1))
    GracePeriodFactory(user_id="user-fine", ends_at=frozen_clock.now + timedelta(days=1))
    report = RetryWorker(grace_days=7).drain()
    assert report.expired_grace == ["user-late"]
    statuses = dict(tx.execute(select(GracePeriod.user_id, GracePeriod.status)).all())
    assert statuses == {"user-late": "expired", "user-fine": "active"}
    [entry] = tx.scalars(select(AuditEntry).where(AuditEntry.action == "grace.expire")).all()
    assert (entry.actor, entry.user_id, entry.context["channel"]) == ("worker", "user-late", "worker")
    assert entry.before["status"] == "active" and entry.after["status"] == "expired"


def test_the_worker_cli_drains_once(runner, tx, frozen_clock):
    receive_unknown_customer_invoice(frozen_clock.now)
    frozen_clock.advance(minutes=2)
    result = runner.invoke(args=["billing", "worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "events run: 1" in result.output
    assert tx.scalar(select(BillingEvent.attempts)) == 2


def test_the_worker_summarises_suppressed_failed_logins_and_purges_expired_idempotency_keys(tx, frozen_clock, make_key):
    flooder = Actor(name="anonymous", role=Role.VIEWER, channel=Channel.API, ip="203.0.113.9")
    for _ in range(keys.AUTH_FAILURES_AUDITED_PER_ADDRESS + 4):
        keys.record_auth_failure(flooder, "unknown key", now=frozen_clock.now)
    key_id = tx.scalar(select(AdminKey.id).where(AdminKey.key_hash == hash_secret(make_key("support"))))
    idempotency.claim(key_id, "retry-1", "fingerprint", now=frozen_clock.now)
    idempotency.finish(key_id, "retry-1", 200, {"ok": True}, now=frozen_clock.now)

    frozen_clock.advance(minutes=1)
    report = RetryWorker(grace_days=7).drain()
    assert (report.auth_summaries, report.idempotency_keys_purged) == (1, 0)
    [summary] = [
        entry for entry in tx.scalars(select(AuditEntry).where(AuditEntry.action == "auth.failed")) if entry.after
    ]
    assert summary.after["suppressed"] == 4 and summary.context["ip"] == "203.0.113.9"

    frozen_clock.advance(hours=24)
    assert RetryWorker(grace_days=7).drain().idempotency_keys_purged == 1
    assert tx.scalar(select(func.count()).select_from(IdempotencyKey)) == 0


def test_a_retried_event_audits_its_changes_as_the_webhook_on_the_worker_channel(tx, frozen_clock):
    CustomerFactory(user_id="user-later", provider_customer_id="cus_nobody")
    receive_unknown_customer_invoice(frozen_clock.now)  # fails: user-later has no subscription yet
    SubscriptionFactory(user_id="user-later", status="past_due", provider_subscription_id="sub_nobody")
    GracePeriodFactory(user_id="user-later", ends_at=frozen_clock.now + timedelta(days=3))
    frozen_clock.advance(minutes=1)
    [result] = webhooks.drain_due(grace_days=7, now=frozen_clock.now)
    assert result.status == "processed"
    entries = tx.scalars(select(AuditEntry).where(AuditEntry.user_id == "user-later").order_by(AuditEntry.id)).all()
    assert [(e.action, e.actor, e.context["channel"]) for e in entries[-2:]] == [
        ("subscription.update", "webhook:evt_retry", "worker"),
        ("grace.resolve", "webhook:evt_retry", "worker"),
    ]
