"""`total` on lists: exact up to EXACT_TOTAL_LIMIT matching rows; beyond it PostgreSQL's estimate, marked."""

import pytest
from sqlalchemy import text

from app.services import benchdata, pagination

EVENTS = "/v1/admin/billing/events"


@pytest.fixture
def forty_events(tx):
    benchdata.load_bench_data(40, 8, force=True)
    if tx.get_bind().dialect.name == "postgresql":
        tx.execute(text("ANALYZE billing_events"))


def test_total_is_exact_up_to_the_limit(api, forty_events):
    body = api("viewer").get(EVENTS, query_string={"limit": 5}).get_json()
    assert (body["total"], body["total_is_estimate"]) == (40, False)


def test_beyond_the_limit_postgresql_estimates_and_says_so(api, tx, forty_events, monkeypatch):
    monkeypatch.setattr(pagination, "EXACT_TOTAL_LIMIT", 10)
    body = api("viewer").get(EVENTS, query_string={"limit": 5}).get_json()
    assert len(body["items"]) == 5
    if tx.get_bind().dialect.name == "postgresql":
        assert body["total_is_estimate"] is True and body["total"] >= 11
    else:
        assert (body["total"], body["total_is_estimate"]) == (40, False)
