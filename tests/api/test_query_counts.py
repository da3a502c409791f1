"""No N+1: each list and detail endpoint issues as many SQL statements for 30 rows as for 3."""

import pytest
from sqlalchemy import func, select

from app.models import BillingEvent, Plan
from app.models.events import AttemptTrigger, EventAttempt, EventStatus
from app.services import benchdata, reconcile
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
