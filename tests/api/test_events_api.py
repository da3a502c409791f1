"""GET /events, GET /events/<id> and POST /webhook/replay: filters, pages, roles, bad input."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.models import AuditEntry, BillingEvent, EventAttempt, EventStatus

EVENTS = "/v1/admin/billing/events"
REPLAY = "/v1/admin/billing/webhook/replay"
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def add_events(tx, count, *, same_time=False, **fields):
    for n in range(count):
        tx.add(
            BillingEvent(
                event_id=f"evt_{fields.get('type', 'x')}_{n:03d}",
                type=fields.get("type", "customer.updated"),
                user_id=fields.get("user_id"),
                payload={"id": f"evt_{n}", "type": "customer.updated", "created": 0, "data": {"object": {}}},
                status=fields.get("status", EventStatus.IGNORED),
                attempts=1,
                last_error=fields.get("last_error"),
                created_at=T0 + (timedelta(0) if same_time else timedelta(seconds=n)),
            )
        )
    tx.commit()


def test_cursor_pages_visit_every_event_exactly_once_newest_first(api, tx):
    add_events(tx, 7, same_time=True)
    add_events(tx, 6, type="invoice.paid")
    client = api("viewer")
    seen, cursor = [], None
    while True:
        resp = client.get(EVENTS, query_string={"limit": 4, **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200
        body = resp.get_json()
        assert body["total"] == 13
        seen += [(item["created_at"], item["event_id"]) for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len({event_id for _, event_id in seen}) == 13
    assert [created for created, _ in seen] == sorted((created for created, _ in seen), reverse=True)


def test_filters_and_skip(api, tx):
    add_events(tx, 3, type="invoice.paid", status=EventStatus.FAILED, user_id="user-a", last_error="boom")
    add_events(tx, 2, type="customer.updated")
    client = api("viewer")
    failed = client.get(EVENTS, query_string={"status": "failed"}).get_json()
    assert failed["total"] == 3 and {item["last_error"] for item in failed["items"]} == {"boom"}
    assert client.get(EVENTS, query_string={"user_id": "user-a", "type": "invoice.paid"}).get_json()["total"] == 3
    window = {"since": (T0 + timedelta(seconds=1)).isoformat(), "until": (T0 + timedelta(seconds=2)).isoformat()}
    assert client.get(EVENTS, query_string=window).get_json()["total"] == 2
    page = client.get(EVENTS, query_string={"skip": 4, "limit": 2}).get_json()
    assert len(page["items"]) == 1 and page["next_cursor"] is None


@pytest.mark.parametrize(
    "query",
    [
        {"status": "lost"},
        {"limit": 0},
        {"limit": 201},
        {"skip": -1},
        {"skip": 10**30},
        {"cursor": "nope"},
        {"since": "2026-01-01T00:00:00"},
    ],
)
def test_invalid_parameters_are_a_400(api, tx, query):
    resp = api("viewer").get(EVENTS, query_string=query)
    assert resp.status_code == 400 and resp.get_json()["code"] == "invalid_parameters"


def test_detail_has_payload_and_attempts_and_unknown_is_404(api, tx):
    add_events(tx, 1)
    event = tx.scalar(select(BillingEvent))
    tx.add(
        EventAttempt(event_pk=event.id, at=T0, trigger="receive", outcome="ignored", error="ignored: x", duration_ms=3)
    )
    tx.commit()
    body = api("viewer").get(f"{EVENTS}/{event.event_id}").get_json()
    assert body["payload"]["data"] == {"object": {}}
    assert body["attempt_history"] == [
        {"at": T0.isoformat(), "trigger": "receive", "outcome": "ignored", "error": "ignored: x", "duration_ms": 3}
    ]
    resp = api("viewer").get(f"{EVENTS}/evt_nope")
    assert resp.status_code == 404 and resp.get_json()["code"] == "not_found"


@pytest.mark.parametrize("role, status", [("viewer", 403), ("support", 403), ("admin", 200)])
def test_only_admins_replay(api, tx, role, status):
    add_events(tx, 1)
    resp = api(role).post(REPLAY, json={"event_id": "evt_x_000"})
    assert resp.status_code == status


def test_dry_run_lists_what_would_run_and_writes_nothing(api, tx):
    add_events(tx, 3, status=EventStatus.FAILED, last_error="boom")
    client = api("admin")
    audits = tx.scalar(select(func.count()).select_from(AuditEntry))
    resp = client.post(REPLAY, json={"status": "failed", "dry_run": True, "limit": 2})
    assert resp.get_json() == {
        "dry_run": True,
        "replayed": 0,
        "results": [{"event_id": f"evt_x_00{n}", "status": "failed", "error": "boom"} for n in (0, 1)],
    }
    assert tx.scalar(select(func.count()).select_from(EventAttempt)) == 0
    assert tx.scalar(select(func.count()).select_from(AuditEntry)) == audits


def test_a_filter_replay_runs_each_event_once_oldest_first(api, tx):
    add_events(tx, 3, status=EventStatus.FAILED, last_error="boom")
    resp = api("admin").post(REPLAY, json={"status": "failed"})
    body = resp.get_json()
    assert body["replayed"] == 3 and [r["event_id"] for r in body["results"]] == ["evt_x_000", "evt_x_001", "evt_x_002"]
    assert {r["status"] for r in body["results"]} == {"ignored"}
    assert set(tx.scalars(select(EventAttempt.trigger))) == {"replay"}
    assert tx.scalar(select(func.count()).where(AuditEntry.action == "webhook.replay")) == 3


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "event_id"),
        ({"event_id": "evt_x_000", "status": "failed"}, "event_id"),
        ({"event_id": "evt_x_000", "event_ids": ["evt_x_000"]}, "event_id"),
        ({"event_ids": [f"evt_{n}" for n in range(1001)]}, "event_ids"),
        ({"event_ids": []}, "event_ids"),
        ({"status": "failed", "limit": 10001}, "limit"),
        ({"event_id": "evt_x_000", "limit": 5}, "limit"),
        ({"event_id": 5}, "event_id"),
        ({"event_id": "evt_x_000", "dry_run": "yes"}, "dry_run"),
        ({"event_id": "evt_x_000", "dry_run": 0}, "dry_run"),
        ({"event_id": "evt_x_000", "reason": "x" * 501}, "reason"),
    ],
)
def test_bad_replay_bodies_are_a_422_and_change_nothing(api, tx, body, field):
    add_events(tx, 1)
    resp = api("admin").post(REPLAY, json=body)
    assert resp.status_code == 422 and field in resp.get_json()["errors"]
    assert tx.scalar(select(func.count()).select_from(EventAttempt)) == 0


def test_the_reason_of_a_replay_lands_in_its_audit_rows(api, tx):
    add_events(tx, 2, status=EventStatus.FAILED, last_error="boom")
    resp = api("admin").post(REPLAY, json={"status": "failed", "reason": "handler fixed in 1.4.2"})
    assert resp.status_code == 200
    reasons = tx.scalars(select(AuditEntry.reason).where(AuditEntry.action == "webhook.replay")).all()
    assert reasons == ["handler fixed in 1.4.2"] * 2


def test_replaying_an_unknown_event_is_a_404_and_replays_nothing(api, tx):
    add_events(tx, 1)
    resp = api("admin").post(REPLAY, json={"event_ids": ["evt_x_000", "evt_nope"]})
    assert resp.status_code == 404 and "evt_nope" in resp.get_json()["detail"]
    assert tx.scalar(select(func.count()).select_from(EventAttempt)) == 0
