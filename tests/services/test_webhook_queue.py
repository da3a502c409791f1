"""Queue mode with real commits, in a database of the test's own: NOTIFY at commit, the worker's wait, two workers.

LISTEN/NOTIFY exists on PostgreSQL only; those tests skip on SQLite, where the worker polls.
"""

import json
import queue
import threading
import time

import psycopg
import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import BillingEvent, EventAttempt
from app.retry_worker import RetryWorker, Wakeup
from app.services import webhooks
from app.services.webhooks import QUEUE_CHANNEL
from tests.concurrency import migrated_app, run_together
from tests.webhooks import SECRET, WEBHOOK_URL, fixture, sign


@pytest.fixture
def queue_app(test_env, own_database):
    with migrated_app(test_env, own_database, WEBHOOK_SECRETS=[SECRET], WEBHOOK_PROCESSING="queue") as app:
        yield app


@pytest.fixture
def conninfo(queue_app):
    """The libpq URL of the test's own PostgreSQL database."""
    with queue_app.app_context():
        wakeup = Wakeup.for_engine(db.engine, QUEUE_CHANNEL)
    wakeup.close()
    if wakeup.conninfo is None:
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; on SQLite the worker polls")
    return wakeup.conninfo


@pytest.fixture
def wakeup(conninfo):
    wakeup = Wakeup(conninfo, QUEUE_CHANNEL)
    yield wakeup
    wakeup.close()


@pytest.fixture
def admin(conninfo):
    """Another session on the database, as an operator's or a test's NOTIFY would come from."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        yield conn


def post(app, event_id: str, *, event_type: str = "plan.created", signature: str | None = None):
    """Deliver an event (plan.created: its handler marks the catalog stale) through the queue-mode receiver."""
    document = fixture("event") | {"id": event_id, "type": event_type, "created": int(time.time())}
    raw = json.dumps(document).encode()
    header = signature or sign(raw, timestamp=int(time.time()))
    return app.test_client().post(WEBHOOK_URL, data=raw, headers={"Stripe-Signature": header})


def notifications_before_a_marker(listener: psycopg.Connection, admin: psycopg.Connection) -> list[str]:
    """The payloads `listener` received on the queue channel before a marker NOTIFY sent now: notifications of
    different transactions arrive in commit order, so this says what every earlier commit sent, without sleeping."""
    admin.execute(f"NOTIFY {QUEUE_CHANNEL}, 'marker'")
    payloads = []
    for notification in listener.notifies(timeout=60):
        if notification.payload == "marker":
            return payloads
        payloads.append(notification.payload)
    raise AssertionError(f"the marker never arrived (received {payloads})")


def test_a_queued_event_notifies_at_commit_and_a_duplicate_or_a_refusal_does_not(queue_app, conninfo, admin):
    with psycopg.connect(conninfo, autocommit=True) as listener:
        listener.execute(f"LISTEN {QUEUE_CHANNEL}")
        resp = post(queue_app, "evt_notify")
        assert resp.status_code == 200 and resp.get_json()["status"] == "received"
        assert notifications_before_a_marker(listener, admin) == [""]

        assert post(queue_app, "evt_notify").get_json()["duplicate"] is True
        assert post(queue_app, "evt_forged", signature=sign(b"{}", timestamp=int(time.time()))).status_code == 400
        assert notifications_before_a_marker(listener, admin) == []


def test_the_wait_ends_on_a_pending_notification_and_times_out_without_one(queue_app, wakeup):
    assert wakeup.listen()
    assert wakeup.wait(0) is False  # nothing queued: the (injected) timeout passes
    assert post(queue_app, "evt_wake").status_code == 200
    assert wakeup.wait(60) is True  # ends when the notification arrives, not after 60 s
    assert wakeup.wait(0) is False  # it was read


def ends_when_interrupted(wakeup: Wakeup) -> bool:
    """Whether a 10-minute wait under way ends at `interrupt()` (what SIGTERM does through RetryWorker.stop)."""
    waiting = threading.Thread(target=wakeup.wait, args=(600,), daemon=True)
    waiting.start()
    wakeup.interrupt()
    waiting.join(timeout=60)
    return not waiting.is_alive()


def test_a_stop_request_ends_the_wait(wakeup):
    assert wakeup.listen()
    assert ends_when_interrupted(wakeup)


def test_a_lost_listen_connection_is_made_again_and_wakes_the_worker(queue_app, wakeup, admin, caplog):
    assert wakeup.listen()
    [ended] = admin.execute(
        "SELECT pg_terminate_backend(pid, 60000) FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
    ).fetchone()
    assert ended is True
    assert wakeup.wait(60) is True  # listening again; whatever was sent meanwhile is lost, so: drain now
    assert "lost the LISTEN connection" in caplog.text
    assert post(queue_app, "evt_after_loss").status_code == 200
    assert wakeup.wait(60) is True


def test_an_idle_worker_is_woken_by_a_queued_event_and_stops_at_once(queue_app, conninfo, monkeypatch):
    rounds: queue.Queue = queue.Queue()  # what each round's drain returned
    drain_due = webhooks.drain_due

    def noted(**kwargs):
        results = drain_due(**kwargs)
        rounds.put(results)
        return results

    monkeypatch.setattr(webhooks, "drain_due", noted)
    worker = RetryWorker(grace_days=7, idle_seconds=600)  # a 10-minute poll: only a NOTIFY wakes it in time
    failures = []

    def run():
        with queue_app.app_context():
            try:
                worker.run_forever()
            except Exception as exc:
                failures.append(repr(exc))
                rounds.put(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert rounds.get(timeout=60) == []  # the first round found nothing; the worker waits
        assert post(queue_app, "evt_worker").status_code == 200
        [result] = rounds.get(timeout=60)
        assert (result.event_id, result.status) == ("evt_worker", "processed")
    finally:
        worker.stop()
        thread.join(timeout=60)
    assert not thread.is_alive() and failures == []
    with queue_app.app_context():
        [attempt] = db.session.scalars(select(EventAttempt)).all()
        assert (attempt.trigger, attempt.outcome) == ("receive", "processed")


def test_two_workers_share_the_queue_and_run_each_event_once(queue_app):
    for n in range(30):
        assert post(queue_app, f"evt_shared_{n}", event_type="customer.updated").status_code == 200
    ran = []

    def work(_n):
        ran.extend(RetryWorker(grace_days=7, batch_size=4).drain().events)

    assert run_together(queue_app, work, 2) == []
    assert sorted(result.event_id for result in ran) == sorted(f"evt_shared_{n}" for n in range(30))
    with queue_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(EventAttempt)) == 30
        assert set(db.session.scalars(select(BillingEvent.status))) == {"ignored"}  # a type billops does not handle


def test_without_a_database_to_listen_on_the_wait_is_a_timeout_that_a_stop_request_ends():
    for wakeup in (Wakeup(None, QUEUE_CHANNEL), Wakeup("postgresql://nobody@127.0.0.1:1/none", QUEUE_CHANNEL)):
        try:
            assert wakeup.wait(0) is False  # SQLite, or PostgreSQL unreachable: poll, never raise
            assert ends_when_interrupted(wakeup)
        finally:
            wakeup.close()
