"""No lost updates: concurrent `credits_delta: 1` requests for one user all land, each with its audit row.

Real commits from many connections need a database of their own (see `own_database`); each thread sends its
requests through the app with its own session and connection, as gunicorn's threads do.
"""

import json
import os
import socket
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from app import clock
from app.config import DEFAULT_CATALOG, PROJECT_ROOT
from app.extensions import db
from app.models import AuditEntry, Subscription
from app.services import audit, demo, keys
from app.services.actor import Actor
from tests.concurrency import migrated_app

REQUESTS = 60
THREADS = 16
URL = "/v1/admin/billing/entitlements/override"


@pytest.fixture
def own_app(test_env, own_database):
    """An app on a fresh, migrated database holding the demo data; yields it with a support key."""
    pool = {"pool_size": THREADS, "max_overflow": 4, "pool_pre_ping": True}
    with migrated_app(test_env, own_database, SQLALCHEMY_ENGINE_OPTIONS=pool) as app:
        with app.app_context():
            operator = Actor.cli("test-operator")
            demo.load_demo_data(DEFAULT_CATALOG, actor=operator, now=clock.utcnow())
            secret = keys.create_key("tooling", "support", actor=operator, now=clock.utcnow()).secret
            db.session.remove()
        yield app, secret


def test_concurrent_deltas_lose_no_update(own_app):
    app, secret = own_app
    with app.app_context():
        start = db.session.scalar(select(Subscription.credits).where(Subscription.user_id == "user-alice"))
        db.session.remove()

    def grant(n: int) -> int:
        response = app.test_client().post(
            URL,
            json={"user_id": "user-alice", "credits_delta": 1, "reason": f"concurrent grant {n}"},
            headers={"X-Admin-Key": secret},
        )
        return response.status_code

    assert send_concurrently(grant) == [200] * REQUESTS
    assert outcome(app, "user-alice") == (start + REQUESTS, REQUESTS, True)


@pytest.fixture
def gunicorn(own_app, own_database, tmp_path):
    """gunicorn with 2 workers of 4 threads on the own database; yields its base URL."""
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "BILLOPS_ENV": "test",
        "DATABASE_URL": own_database,
        "BILLOPS_INSTANCE_PATH": str(tmp_path),
        "FLASK_SKIP_DOTENV": "1",  # not the settings of a `make run` .env in the checkout
    }
    command = [sys.executable, "-m", "gunicorn", "-w", "2", "--threads", "4", "-b", f"127.0.0.1:{port}", "wsgi:app"]
    server = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        for line in server.stderr:  # the master listens before its workers boot; requests queue until they do
            if "Listening at" in line:
                break
        else:
            pytest.fail(f"gunicorn exited with {server.wait()} before listening")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_concurrent_deltas_through_two_gunicorn_workers_lose_no_update(own_app, gunicorn):
    app, secret = own_app
    body = json.dumps({"user_id": "user-bob", "credits_delta": 1, "reason": "through gunicorn"}).encode()

    def grant(_: int) -> int:
        request = urllib.request.Request(
            f"{gunicorn}{URL}",
            data=body,
            headers={"X-Admin-Key": secret, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status

    assert send_concurrently(grant) == [200] * REQUESTS
    assert outcome(app, "user-bob") == (120 + REQUESTS, REQUESTS, True)


def send_concurrently(send) -> list[int]:
    """Call `send(n)` for each of REQUESTS requests from THREADS threads; their statuses in order."""
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(send, range(REQUESTS)))


def outcome(app, user_id: str) -> tuple[int, int, bool]:
    """The user's credits, how many overrides were audited for them, and whether the audit chain is intact."""
    with app.app_context():
        credits = db.session.scalar(select(Subscription.credits).where(Subscription.user_id == user_id))
        audited = db.session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "entitlements.override", AuditEntry.user_id == user_id)
        )
        intact = audit.verify_chain().ok
        db.session.remove()
    return credits, audited, intact


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
