#!/usr/bin/env python3
"""Per-request milliseconds and a cProfile of the hot paths, in process, on PostgreSQL (docs/performance.md).

    .venv/bin/python bench/profile_hotpaths.py --database billops_bench_hot [--n 200] [--top 25] [--only ingest]

Creates (or recreates) the database, migrates it, loads 2,000 bench events, then times and profiles: signed
webhook ingest through the Flask test client (processed in the request, then `WEBHOOK_PROCESSING=queue`: stored
only), the worker's rounds over queued events, `webhooks.replay_events` over stored events, the retry worker
draining due retries (`RetryWorker.drain`, as `billing worker --once`), and
`POST /v1/admin/billing/entitlements/override` through the test client and `override_entitlements` directly.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import json
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import psycopg
import sqlalchemy
from sqlalchemy.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from app import clock, create_app  # noqa: E402
from app.config import Config  # noqa: E402
from app.retry_worker import BATCH_SIZE, RetryWorker  # noqa: E402
from app.services import entitlements, webhooks  # noqa: E402
from app.services.actor import Actor  # noqa: E402
from app.services.benchdata import user_id  # noqa: E402
from app.services.webhooks import signature_header  # noqa: E402
from bench.run import _subscription  # noqa: E402

_SENT = [0]  # statements sent by any engine


@sqlalchemy.event.listens_for(Engine, "before_cursor_execute")
def _count_statement(*_args) -> None:
    _SENT[0] += 1


SECRET = "whsec_profile_" + "x" * 24
ADMIN_KEY = "bok_profile_" + "y" * 40


def environment(url: str, processing: str = "inline") -> dict[str, str]:
    return {
        "BILLOPS_ENV": "production",
        "SECRET_KEY": "z" * 48,
        "ADMIN_KEY": ADMIN_KEY,
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_PROCESSING": processing,
        "DATABASE_URL": url,
        "LOG_LEVEL": "WARNING",
        "PATH": "/usr/bin:/bin",
    }


def prepare(server: str, database: str) -> str:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    url = f"{server}/{database}"
    flask = [str(Path(sys.executable).parent / "flask"), "--app", "wsgi"]
    for args in (["db", "upgrade"], ["billing", "bench-data", "--events", "2000", "--subscriptions", "200"]):
        subprocess.run([*flask, *args], cwd=ROOT, env=environment(url), check=True, capture_output=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return url


def measure(label: str, jobs: list, run: Callable, top: int) -> None:
    """Run one warm-up job, then the rest twice: timed (wall and this process's CPU, statements sent), then
    under cProfile; print the figures per job and the top functions. On a shared machine the wall time moves
    with the load; CPU and statements are the figures to compare."""
    run(jobs[0])
    count = len(jobs) - 1
    statements = _SENT[0]
    wall, cpu = time.perf_counter(), time.process_time()
    for job in jobs[1:]:
        run(job)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sent = (_SENT[0] - statements) / count
    profile = cProfile.Profile()
    profile.enable()
    for job in jobs[1:]:
        run(job)
    profile.disable()
    print(
        f"\n=== {label}: {wall * 1000 / count:.2f} ms wall, {cpu * 1000 / count:.2f} ms CPU, "
        f"{sent:.1f} statements per call ({count} calls, load {os.getloadavg()[0]:.1f})"
    )
    stats = pstats.Stats(profile)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="billops_bench_hot")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--only", choices=("ingest", "ingest-queue", "worker", "replay", "drain", "override", "override-service")
    )
    args = parser.parse_args()
    url = prepare(args.pg, args.database)
    app = create_app(Config(environment(url)))
    client = app.test_client()
    queue_client = create_app(Config(environment(url, "queue"))).test_client()
    now = int(time.time())
    delivery_ids = itertools.count()

    def deliver(n: int, client=client) -> None:
        body = json.dumps(
            {
                "id": f"evt_profile_{next(delivery_ids):07d}",
                "object": "event",
                "type": "customer.subscription.updated",
                "created": now,
                "data": {"object": _subscription(n % 200, now)},
            }
        ).encode()
        headers = {"Stripe-Signature": signature_header(body, SECRET, timestamp=int(time.time()))}
        assert client.post("/v1/billing/webhooks", data=body, headers=headers).status_code == 200

    def worker_round(_round: int) -> None:
        with app.app_context():
            assert len(worker.run_round().events) == BATCH_SIZE

    def replay(batch: int) -> None:
        with app.app_context():
            webhooks.replay_events(
                type="customer.subscription.updated", limit=batch, actor=admin, grace_days=3, now=clock.utcnow()
            )

    def drain(batch: int) -> None:
        """Make `batch` processed invoice events due again (one UPDATE outside SQLAlchemy, so not counted), then
        drain them as `billing worker --once` does."""
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "UPDATE billing_events SET status = 'failed', attempts = 1, next_retry_at = now() - interval '1 minute'"
                " WHERE id IN (SELECT id FROM billing_events WHERE status = 'processed' AND type LIKE 'invoice.%%'"
                " ORDER BY id DESC LIMIT %s)",
                (batch,),
            )
        with app.app_context():
            drained = RetryWorker(grace_days=3).drain()
        assert len(drained.events) == batch, len(drained.events)

    def override(n: int) -> None:
        body = {"user_id": user_id(n % 200), "credits_delta": 5, "reason": "profile"}
        answer = client.post("/v1/admin/billing/entitlements/override", json=body, headers={"X-Admin-Key": ADMIN_KEY})
        assert answer.status_code == 200, answer.get_data()

    def override_service(n: int) -> None:
        with app.app_context():
            entitlements.override_entitlements(
                user_id(n % 200), credits_delta=5, reason="profile", actor=admin, now=clock.utcnow()
            )

    admin = Actor.cli("profile")
    n = args.n
    worker, rounds = RetryWorker(grace_days=3), max(2, n // BATCH_SIZE)
    if args.only in (None, "worker"):  # queued events for a warm-up round and two passes of `rounds` rounds
        for k in range(BATCH_SIZE * (1 + 2 * rounds)):
            deliver(k, client=queue_client)
    paths = {
        "ingest": (f"signed webhook ingest, test client, {n} deliveries", list(range(n)), deliver),
        "ingest-queue": (
            f"signed webhook ingest, WEBHOOK_PROCESSING=queue, test client, {n} deliveries",
            list(range(n)),
            partial(deliver, client=queue_client),
        ),
        "worker": (
            f"RetryWorker.run_round over queued events, {BATCH_SIZE} per round ({rounds} rounds)",
            list(range(rounds + 1)),
            worker_round,
        ),
        "replay": ("replay_events, 1 then 400 events (ms per replay of 400)", [1, 400, 400], replay),
        "drain": ("RetryWorker.drain, 1 then 400 due retries (ms per drain of 400)", [1, 400, 400], drain),
        "override": (f"POST /entitlements/override, test client, {n} requests", list(range(n)), override),
        "override-service": (f"override_entitlements, {n} calls", list(range(n)), override_service),
    }
    for name, (label, jobs, run) in paths.items():
        if args.only in (None, name):
            measure(label, jobs, run, args.top)


if __name__ == "__main__":
    main()
