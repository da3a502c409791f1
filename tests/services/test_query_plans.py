"""The hot queries' plans use the index built for them (PostgreSQL; plans are read, never timed).

Each test runs the real request or service call, captures the SELECT it sent, and EXPLAINs that very statement
with its parameters. The tables are tiny, so sequential scans, bitmap scans and sorts are switched off for the
test's transaction: what is left is the planner's choice among indexes that deliver the rows in page order.
"""

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from app.services import benchdata, reconcile, webhooks

API = "/v1/admin/billing"


@pytest.fixture
def planner(tx):
    if tx.get_bind().dialect.name != "postgresql":
        pytest.skip("query plans are PostgreSQL's")
    benchdata.load_bench_data(400, 40, force=True)
    for table in ("billing_events", "billing_admin_audit"):
        tx.execute(text(f"ANALYZE {table}"))
    for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
        tx.execute(text(f"SET LOCAL {setting} = off"))

    def plan_of(seen, table: str, *markers: str) -> str:
        """The EXPLAIN output of the one captured SELECT reading `table` and containing every one of `markers`."""
        chosen = [
            (sql, params)
            for sql, params in seen
            if sql.lstrip().startswith("SELECT")
            and f"FROM {table}" in sql
            and "count(" not in sql
            and all(m in sql for m in markers)
        ]
        assert len(chosen) == 1
        sql, params = chosen[0]
        rows = tx.connection().exec_driver_sql("EXPLAIN " + sql, params).scalars()
        return "\n".join(rows)

    return plan_of


@pytest.mark.parametrize(
    "query, index",
    [
        ({"status": "failed"}, "ix_billing_events_status_created_at"),
        ({"user_id": benchdata.user_id(3)}, "ix_billing_events_user_id_created_at"),
        ({"type": "customer.subscription.deleted"}, "ix_billing_events_type_created_at"),
        ({}, "ix_billing_events_created_at_id"),
    ],
)
def test_event_pages_read_the_index_of_their_filter(api, planner, statements, query, index):
    client = api("viewer")
    first = client.get(f"{API}/events", query_string={**query, "limit": 2}).get_json()
    with statements() as seen:
        resp = client.get(f"{API}/events", query_string={**query, "limit": 2, "cursor": first["next_cursor"]})
    assert resp.status_code == 200
    assert index in planner(seen, "billing_events", "ORDER BY")


@pytest.mark.parametrize(
    "query, index",
    [
        ({"user_id": benchdata.user_id(3)}, "ix_billing_admin_audit_user_id_id"),
        ({"actor": "support-agent-3"}, "ix_billing_admin_audit_actor_id"),
        ({"action": "grace.reset"}, "ix_billing_admin_audit_action_id"),
    ],
)
def test_audit_pages_read_the_index_of_their_filter(api, planner, statements, query, index):
    with statements() as seen:
        resp = api("viewer").get(f"{API}/audit", query_string={**query, "limit": 2})
    assert resp.status_code == 200
    assert index in planner(seen, "billing_admin_audit", "WHERE", "ORDER BY")


def test_the_workers_claim_reads_due_events_in_order_without_sorting_the_queue(planner, statements):
    with statements() as seen:
        webhooks.process_next_due(grace_days=7, now=datetime(2026, 1, 1, tzinfo=UTC))
    plan = planner(seen, "billing_events", "SKIP LOCKED")
    assert "ix_billing_events_due" in plan
    assert "Sort" not in plan  # a sort would read every due event at every claim: quadratic behind a long queue


def test_a_reconcile_page_reads_customers_and_manual_changes_by_user_id(api, planner, statements, monkeypatch):
    monkeypatch.setattr(reconcile, "BATCH_SIZE", 2)  # one batch: 2 of the 40 customers (100 of 100,000 at scale)
    monkeypatch.setitem(reconcile.SCAN_BUDGET, "events", 1)
    with statements() as seen:
        resp = api("viewer").get(f"{API}/reconcile")
    assert resp.status_code == 200 and resp.get_json()["checked"] == 1
    assert "uq_billing_customers_user_id" in planner(seen, "billing_customers", "LEFT OUTER JOIN")
    assert "ix_billing_admin_audit_manual_changes" in planner(seen, "billing_admin_audit", "NOT LIKE")
    assert not [sql for sql, _ in seen if "FROM billing_events" in sql]  # the evidence came with the customers
