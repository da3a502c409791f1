"""No N+1: each list and detail endpoint, and each batch of webhook events, issues as many SQL statements for 30
rows as for 3."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.models import BillingEvent, Plan
from app.models.events import AttemptTrigger, EventAttempt, EventStatus
from app.services import benchdata, reconcile, webhooks
from tests.factories import PlanFactory
from tests.webhooks import deliver, event, fixture

API = "/v1/admin/billing"


def grow_to(tx, rows: int) -> None:
    """`rows` bench users, events, plans beyond the catalog, and attempts on the first event."""
    benchdata.load_bench_data(rows, rows, force=True)
    PlanFactory.create_batch(rows - tx.scalar(select(func.count(Plan.id)).where(Plan.code.like("plan-%"))))
    first = tx.scalar(select(BillingEvent).where(BillingEvent.event_id == benchdata.event_id(0)))
    for _ in range(rows - len(first.attempt_history)):
        tx.add(
            EventAttempt(
                event_pk=first.id,
                at=first.received_at,
                trigger=AttemptTrigger.RETRY,
                outcome=EventStatus.FAILED,
                error="x",
                duration_ms=1,
            )
        )
    tx.commit()


@pytest.mark.parametrize(
    "path",
    [
        "/events?limit=200",
        "/events?limit=200&status=processed",
        f"/events/{benchdata.event_id(0)}",
        "/audit?limit=200",
        "/plans",
        f"/subscriptions/{benchdata.user_id(0)}",
    ],
)
def test_statements_stay_flat_as_rows_grow(api, tx, statements, path):
    client = api("admin")
    counts = []
    for rows in (3, 30):
        grow_to(tx, rows)
        client.get(API + path)  # once first: the key's first use is recorded once, whatever the rows
        with statements() as seen:
            resp = client.get(API + path)
        assert resp.status_code == 200, resp.get_json()
        counts.append(len(seen))
    assert counts[0] == counts[1], f"{path}: {counts[0]} statements with 3 rows, {counts[1]} with 30"


def test_a_reconcile_page_issues_the_same_statements_however_many_customers(api, tx, statements, monkeypatch):
    """A page reads its customers and their evidence a batch at a time, and at most its scan budget of them."""
    monkeypatch.setattr(reconcile, "BATCH_SIZE", 5)
    monkeypatch.setitem(reconcile.SCAN_BUDGET, "events", 10)
    client = api("viewer")
    counts = []
    for rows in (30, 60):
        benchdata.load_bench_data(rows * 3, rows, force=True)
        client.get(API + "/reconcile?limit=200")  # once first: the key's first use is recorded once
        with statements() as seen:
            resp = client.get(API + "/reconcile?limit=200")
        assert resp.status_code == 200 and resp.get_json()["checked"] == 10, resp.get_json()
        counts.append(len(seen))
    assert counts[0] == counts[1] <= 12, counts


def add_events(tx, count, now, *, status=EventStatus.FAILED):
    """`count` events of a type billops ignores (their handler runs no statement), due for a retry at `now`."""
    for n in range(count):
        tx.add(
            BillingEvent(
                event_id=f"evt_count_{count}_{n}",
                type="customer.updated",
                payload={"id": f"evt_count_{count}_{n}", "type": "customer.updated", "created": 0},
                status=status,
                attempts=1,
                next_retry_at=now - timedelta(minutes=1) if status is EventStatus.FAILED else None,
                created_at=now,
            )
        )
    tx.commit()


def test_a_batch_of_due_retries_issues_the_same_statements_for_3_events_as_for_30(tx, statements, frozen_clock):
    """The claim, the attempts and the event updates are one statement each per batch; a handler's own
    statements (none here) and its savepoint (emitted only when it runs a statement) come on top."""
    counts = []
    for events in (3, 30):
        add_events(tx, events, frozen_clock.now)
        with statements() as seen:
            assert len(webhooks.drain_due(grace_days=7, now=frozen_clock.now)) == events
        counts.append(len(seen))
    assert counts[0] == counts[1], counts


def test_a_replay_batch_issues_the_same_statements_for_3_events_as_for_30(tx, statements, frozen_clock, cli_actor):
    """Processed events run no handler; their attempts and `webhook.replay` audit rows are written per batch."""
    counts = []
    for events in (3, 30):
        add_events(tx, events, frozen_clock.now, status=EventStatus.PROCESSED)
        with statements() as seen:
            report = webhooks.replay_events(
                type="customer.updated",
                status="processed",
                limit=events,
                actor=cli_actor,
                grace_days=7,
                now=frozen_clock.now,
            )
        assert report.replayed == events
        counts.append(len(seen))
        tx.execute(update(BillingEvent).values(status=EventStatus.IGNORED))  # not chosen again
        tx.commit()
    assert counts[0] == counts[1], counts


def test_a_queued_webhook_is_stored_in_one_statement(webhook_app, tx, statements, frozen_clock, monkeypatch):
    """In queue mode the receiver only stores: one INSERT, which on PostgreSQL also notifies the workers."""
    monkeypatch.setitem(webhook_app.config, "WEBHOOK_PROCESSING", "queue")
    client = webhook_app.test_client()
    document = event("customer.updated", fixture("customer"), event_id="evt_one_statement", created=frozen_clock.now)
    with statements() as seen:
        resp = deliver(client, document, now=frozen_clock.now)
    assert resp.status_code == 200 and resp.get_json()["status"] == "received"
    # The suite's commits are savepoints of the test's transaction (BEGIN and COMMIT in production).
    [sql] = [sql for sql, _ in seen if "SAVEPOINT" not in sql]
    assert "INSERT INTO billing_events" in sql
    assert ("pg_notify" in sql) == (tx.get_bind().dialect.name == "postgresql")
