#!/usr/bin/env python3
"""The billops benchmark (bench/README.md): gunicorn on PostgreSQL, each figure against a bare baseline.

    .venv/bin/python bench/run.py --smoke   # tiny, < 1 min (CI)
    .venv/bin/python bench/run.py --quick   # 100k events, 10k subscriptions
    .venv/bin/python bench/run.py           # 1M events, 100k subscriptions

It creates its own database (dropped at the end unless --keep-db), fills it with `billing bench-data`, starts
gunicorn in production mode with generated keys, measures, and prints a markdown table. Load is loopback only,
bounded in count; the machine is shared, so read the ratios, not the absolute rates.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import psycopg
from itsdangerous import URLSafeSerializer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from app.services.benchdata import user_id  # noqa: E402
from app.services.webhooks import signature_header  # noqa: E402

API = "/v1/admin/billing"
RECONCILE_BUDGET = 180  # seconds; a slower report is stopped and its rate reported
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Sizes:
    events: int
    subscriptions: int
    ingest: int  # webhook deliveries (and bare inserts)
    batch: int  # replayed events, due retries per worker run
    requests: int  # override requests per scenario
    repeats: int  # timings per page read (the median is reported)
    queue_workers: tuple[int, ...]  # `billing worker` processes behind the queue-mode receiver, one run each


SIZES = {
    "smoke": Sizes(2_000, 200, 200, 100, 64, 3, (1,)),
    "quick": Sizes(100_000, 10_000, 2_000, 10_000, 400, 5, (1, 2)),
    "full": Sizes(1_000_000, 100_000, 4_000, 10_000, 800, 7, (1, 2)),
}
QUEUE_BUDGET = 600  # seconds for queued events to be processed before the run gives up


# What a run measures, in this order (the last two with gunicorn stopped).
STEPS = (
    "pages",
    "ingest",
    "queue_mode",
    "replay",
    "export",
    "overrides",
    "audited_writes",
    "reconcile",
    "drain",
    "verify",
)


@dataclass
class Row:
    figure: str
    value: str
    baseline: str = ""
    ratio: str = ""
    goal: str = ""


class Bench:
    def __init__(self, sizes: Sizes, admin_url: str, database: str) -> None:
        self.sizes = sizes
        self.admin_url = admin_url
        self.database = database
        self.url = f"{admin_url}/{database}"
        self.secret_key = secrets.token_urlsafe(48)
        self.admin_key = "bok_bench_" + secrets.token_urlsafe(32)
        self.webhook_secret = "whsec_bench_" + secrets.token_urlsafe(24)
        self.rows: list[Row] = []
        self.server: subprocess.Popen | None = None  # gunicorn, WEBHOOK_PROCESSING=inline (every other figure)
        self.port = 0
        self.queue_server: subprocess.Popen | None = None  # gunicorn, WEBHOOK_PROCESSING=queue, until queue_mode
        self.queue_port = 0
        self.queue_workers: list[subprocess.Popen] = []  # `billing worker` processes behind it

    # -- setup ----------------------------------------------------------------------------------------------------

    def env(self, processing: str = "inline") -> dict[str, str]:
        return {
            "WEBHOOK_PROCESSING": processing,
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "BILLOPS_ENV": "production",
            "SECRET_KEY": self.secret_key,
            "ADMIN_KEY": self.admin_key,
            "WEBHOOK_SECRET": self.webhook_secret,
            "DATABASE_URL": self.url,
            "LOG_LEVEL": "WARNING",
        }

    def flask(self, *args: str) -> str:
        cmd = [str(VENV_BIN / "flask"), "--app", "wsgi", *args]
        done = subprocess.run(cmd, cwd=ROOT, env=self.env(), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def create_database(self) -> None:
        with psycopg.connect(f"{self.admin_url}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.database}"')
        self.flask("db", "upgrade")

    def drop_database(self) -> None:
        with psycopg.connect(f"{self.admin_url}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def fill(self) -> None:
        started = time.perf_counter()
        self.flask(
            "billing",
            "bench-data",
            "--events",
            str(self.sizes.events),
            "--subscriptions",
            str(self.sizes.subscriptions),
        )
        seconds = time.perf_counter() - started
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        self.rows.append(Row("bench-data (events/s written, COPY)", f"{self.sizes.events / seconds:,.0f}/s"))

    def spawn_queue_side(self) -> None:
        """gunicorn in queue mode and its first workers, started while bench-data fills the database (each process
        spends seconds importing); they wait idle until queue_mode."""
        self.queue_server, self.queue_port = self.spawn_server("queue")
        self.queue_workers = self.start_workers(self.sizes.queue_workers[0])

    def start_servers(self) -> None:
        """gunicorn in inline mode (every figure but queue mode's), once both servers answer."""
        self.server, self.port = self.spawn_server("inline")
        for port in (self.port, self.queue_port):
            if port:  # no queue side when queue_mode is not measured
                self.wait_healthy(port)

    def spawn_server(self, processing: str, workers: int = 2, threads: int = 4) -> tuple[subprocess.Popen, int]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        cmd = [str(VENV_BIN / "gunicorn"), "-w", str(workers), "--threads", str(threads), "--timeout", "600"]
        server = subprocess.Popen(
            [*cmd, "-b", f"127.0.0.1:{port}", "wsgi:app"],
            cwd=ROOT,
            env=self.env(processing),
            stderr=subprocess.DEVNULL,
        )
        return server, port

    def wait_healthy(self, port: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with closing(self.connect(port)) as conn:
                    if self.request("GET", "/healthz", auth=False, conn=conn)[0] == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("gunicorn did not answer /healthz within 60 s")

    def stop_servers(self) -> None:
        self.stop_workers(self.queue_workers)
        for server in (self.server, self.queue_server):
            if server and server.poll() is None:
                server.terminate()
                server.wait(timeout=30)

    # -- HTTP -----------------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: bytes | None = None, headers=None, auth=True, conn=None):
        """(status, body bytes, seconds)."""
        own = conn is None
        conn = conn or self.connect()
        all_headers = {"X-Admin-Key": self.admin_key} if auth else {}
        all_headers |= headers or {}
        started = time.perf_counter()
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        data = response.read()
        seconds = time.perf_counter() - started
        if own:
            conn.close()
        return response.status, data, seconds

    def connect(self, port: int | None = None) -> http.client.HTTPConnection:
        """A keep-alive connection with Nagle off, as curl and HTTP client libraries have it: http.client sends
        a POST's headers and body in two writes, and Nagle with delayed ACKs would add ~20-40 ms to each."""
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=600)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def get_json(self, path: str, **query) -> tuple[dict, float]:
        status, data, seconds = self.request("GET", f"{path}?{urlencode(query)}" if query else path)
        if status != 200:
            raise SystemExit(f"GET {path} {query} answered {status}: {data[:300]!r}")
        return json.loads(data), seconds

    def median_get(self, path: str, **query) -> tuple[dict, float]:
        self.get_json(path, **query)  # warm: the first read of a page pays for cold caches, not for the query
        timings = [self.get_json(path, **query) for _ in range(self.sizes.repeats)]
        return timings[-1][0], statistics.median(seconds for _, seconds in timings)

    def in_threads(self, jobs: list, clients: int, run: Callable, port: int | None = None) -> tuple[float, list]:
        """Run `run(conn, job)` for every job on `clients` threads, each with its own keep-alive connection."""
        local = threading.local()

        def call(job):
            if not hasattr(local, "conn"):
                local.conn = self.connect(port)
            return run(local.conn, job)

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            latencies = list(pool.map(call, jobs))
        return time.perf_counter() - started, latencies

    # -- figures --------------------------------------------------------------------------------------------------

    def deliveries(self, prefix: str) -> list[bytes]:
        now = int(time.time())
        return [
            json.dumps(
                {
                    "id": f"evt_{prefix}_{n:07d}",
                    "object": "event",
                    "type": "customer.subscription.updated",
                    "created": now,
                    "data": {"object": _subscription(n % self.sizes.subscriptions, now)},
                }
            ).encode()
            for n in range(self.sizes.ingest)
        ]

    def deliver(self, conn, body: bytes) -> str:
        """POST one signed delivery; the event's status in the answer."""
        header = signature_header(body, self.webhook_secret, timestamp=int(time.time()))
        headers = {"Stripe-Signature": header, "Content-Type": "application/json"}
        status, data, _ = self.request("POST", "/v1/billing/webhooks", body, headers, auth=False, conn=conn)
        if status != 200:
            raise SystemExit(f"webhook answered {status}: {data[:300]!r}")
        return json.loads(data)["status"]

    def ingest(self) -> None:
        bodies = self.deliveries("ingest")
        http_seconds, _ = self.in_threads(bodies, 8, self.deliver)
        bare_seconds = self.bare_inserts(self.deliveries("bare"))
        with psycopg.connect(self.url) as conn:
            processed = conn.execute(
                "SELECT count(*) FROM billing_events WHERE event_id LIKE 'evt_ingest_%' AND status <> 'received'"
            ).fetchone()[0]
        rate, bare = len(bodies) / http_seconds, len(bodies) / bare_seconds
        self.rows.append(
            Row(
                "webhook ingest, 8 clients (processed in the request)",
                f"{rate:,.0f}/s",
                f"{bare:,.0f}/s bare INSERT",
                f"{rate / bare:.2f}",
                ">= 0.5 and >= 1,000/s processed",
            )
        )
        self.rows.append(
            Row(
                "events processed when acknowledged",
                f"{processed}/{len(bodies)}",
                "",
                "",
                "processing lag: 0 (in the request)",
            )
        )

    def bare_inserts(self, bodies: list[bytes]) -> float:
        """The same documents as single committed INSERTs into billing_events, 8 connections."""
        local = threading.local()
        sql = (
            "INSERT INTO billing_events (event_id, type, user_id, payload, status, attempts, created_at, received_at,"
            " updated_at) VALUES (%s, %s, %s, %s, 'received', 0, now(), now(), now())"
        )

        def insert(body: bytes) -> None:
            if not hasattr(local, "conn"):
                local.conn = psycopg.connect(self.url, autocommit=True)
            doc = json.loads(body)
            local.conn.execute(
                sql, (doc["id"], doc["type"], doc["data"]["object"]["metadata"]["user_id"], body.decode())
            )

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(insert, bodies))
        return time.perf_counter() - started

    def queue_mode(self) -> None:
        """Ingest through the queue-mode gunicorn with each count of `billing worker` processes behind it, then
        stop them and that gunicorn (every later figure uses the inline one)."""
        try:
            for workers in self.sizes.queue_workers:
                self.queue_workers += self.start_workers(workers - len(self.queue_workers))
                self.wait_listening(self.queue_workers)
                self.ingest_queued(workers)
        finally:
            self.stop_workers(self.queue_workers)
            self.queue_workers = []
            self.queue_server.terminate()
            self.queue_server.wait(timeout=30)

    def ingest_queued(self, workers: int) -> None:
        prefix = f"evt_queue{workers}_"
        bodies = self.deliveries(prefix.removeprefix("evt_").rstrip("_"))
        with psycopg.connect(self.url, autocommit=True) as conn:
            [last_id] = conn.execute("SELECT coalesce(max(id), 0) FROM billing_events").fetchone()
            started = time.perf_counter()
            http_seconds, answers = self.in_threads(bodies, 8, self.deliver, port=self.queue_port)
            processed_seconds = self.wait_processed(conn, last_id, started)
            stored, processed, attempts, p50, p99 = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE status <> 'received'),"
                " (SELECT count(*) FROM billing_event_attempts WHERE event_pk > %(id)s),"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY processed_at - received_at),"
                " percentile_cont(0.99) WITHIN GROUP (ORDER BY processed_at - received_at)"
                " FROM billing_events WHERE id > %(id)s AND event_id LIKE %(prefix)s",
                {"id": last_id, "prefix": prefix + "%"},
            ).fetchone()
        acknowledged = answers.count("received")
        if not acknowledged == stored == processed == attempts == len(bodies):
            raise SystemExit(
                f"queue mode: {acknowledged} acknowledged as received, {stored} stored, {processed} processed, "
                f"{attempts} attempts, for {len(bodies)} deliveries"
            )
        rate, bare = len(bodies) / http_seconds, len(bodies) / self.bare_inserts(self.deliveries(f"bare_q{workers}"))
        label = f"queue mode, {workers} worker(s)"
        self.rows += [
            Row(
                f"webhook ingest, 8 clients, {label}: acknowledged",
                f"{rate:,.0f}/s",
                f"{bare:,.0f}/s bare INSERT",
                f"{rate / bare:.2f}",
                ">= 0.5",
            ),
            Row(
                f"events fully processed, {label} (first send to last processed)",
                f"{len(bodies) / processed_seconds:,.0f} events/s",
                "",
                "",
                ">= 1,000/s",
            ),
            Row(
                f"processing lag (processed_at - received_at), {label}",
                f"p50 {_ms(p50.total_seconds())}, p99 {_ms(p99.total_seconds())}",
                "",
                "",
                f"{processed:,}/{acknowledged:,} acknowledged events stored and processed, {attempts:,} attempts",
            ),
        ]

    def wait_processed(self, conn: psycopg.Connection, last_id: int, started: float) -> float:
        """Seconds from `started` until no event stored after `last_id` is left unprocessed (polled every 20 ms,
        through the status index: bench-data writes no `received` events)."""
        deadline = time.monotonic() + QUEUE_BUDGET
        waiting = "SELECT EXISTS (SELECT FROM billing_events WHERE status = 'received' AND id > %s)"
        while conn.execute(waiting, (last_id,)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise SystemExit(f"queued events were still unprocessed after {QUEUE_BUDGET} s")
            time.sleep(0.02)
        return time.perf_counter() - started

    def start_workers(self, count: int) -> list[subprocess.Popen]:
        cmd = [str(VENV_BIN / "flask"), "--app", "wsgi", "billing", "worker"]
        return [
            subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=self.env("queue"),
                stdout=subprocess.DEVNULL,
                stderr=tempfile.TemporaryFile(),  # read when the worker fails
            )
            for _ in range(count)
        ]

    def wait_listening(self, procs: list[subprocess.Popen]) -> None:
        """Until every worker LISTENs for queued events."""
        deadline = time.monotonic() + 60
        with psycopg.connect(self.url, autocommit=True) as conn:
            while True:
                listening = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
                ).fetchone()[0]
                if listening >= len(procs):
                    return
                if any(proc.poll() is not None for proc in procs) or time.monotonic() > deadline:
                    self.stop_workers(procs)
                    raise SystemExit("billing worker did not start listening")
                time.sleep(0.1)

    def stop_workers(self, procs: list[subprocess.Popen]) -> None:
        """SIGTERM, as a deployment stops them: each finishes its batch and exits 0."""
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            if proc.wait(timeout=60) != 0:
                proc.stderr.seek(0)
                raise SystemExit(f"billing worker exited {proc.returncode}:\n{proc.stderr.read().decode()[-2000:]}")

    def pages(self) -> None:
        events = f"{API}/events"
        first, page1 = self.median_get(events, limit=50)
        depth = int(self.sizes.events * 0.9)
        with psycopg.connect(self.url) as conn:
            created_at, pk = conn.execute(
                "SELECT created_at, id FROM billing_events ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",
                (depth,),
            ).fetchone()
        cursor = URLSafeSerializer(self.secret_key, salt="billops.cursor.events").dumps(
            [created_at.astimezone(UTC).isoformat(), pk]
        )
        _, deep = self.median_get(events, limit=50, cursor=cursor)
        _, skipped = self.median_get(events, limit=50, skip=10_000)
        self.rows.append(
            Row(
                "events page 1 (50 rows)",
                _ms(page1),
                "",
                "",
                f"total {first['total']:,} (estimate: {first['total_is_estimate']})",
            )
        )
        self.rows.append(
            Row(
                f"events page at cursor depth {depth:,}",
                _ms(deep),
                _ms(page1) + " page 1",
                f"{deep / page1:.2f}",
                "<= 1.5",
            )
        )
        self.rows.append(
            Row(
                "events page at skip=10,000 (the API's deepest skip)",
                _ms(skipped),
                _ms(page1) + " page 1",
                f"{skipped / page1:.2f}",
                "(comparison)",
            )
        )
        for name, query in (("status=failed", {"status": "failed"}), ("user_id (hot user)", {"user_id": user_id(0)})):
            body, seconds = self.median_get(events, limit=50, **query)
            self.rows.append(
                Row(
                    f"GET /events?{name}",
                    _ms(seconds),
                    _ms(page1) + " page 1",
                    f"{seconds / page1:.2f}",
                    f"total {body['total']:,} (estimate: {body['total_is_estimate']})",
                )
            )

    def replay(self) -> None:
        body = json.dumps({"type": "customer.subscription.updated", "limit": self.sizes.batch}).encode()
        status, data, seconds = self.request(
            "POST", f"{API}/webhook/replay", body, {"Content-Type": "application/json"}
        )
        if status != 200:
            raise SystemExit(f"replay answered {status}: {data[:300]!r}")
        replayed = json.loads(data)["replayed"]
        self.rows.append(
            Row(f"bulk replay of {replayed:,} events", f"{replayed / seconds:,.0f} events/s", "", "", ">= 500 events/s")
        )

    def drain(self, workers: int) -> None:
        """Make `sizes.batch` processed invoice events due again and time `workers` processes draining them. Each
        run takes events no earlier run took (the newest after those), so none finds them in PostgreSQL's cache."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                "UPDATE billing_events SET status = 'failed', attempts = 1, next_retry_at = now() - interval '1 minute'"
                " WHERE id IN (SELECT id FROM billing_events WHERE status = 'processed' AND type LIKE 'invoice.%%'"
                " AND attempts = 1 ORDER BY id DESC LIMIT %s)",
                (self.sizes.batch,),
            )
        cmd = [str(VENV_BIN / "flask"), "--app", "wsgi", "billing", "worker", "--once"]
        started = time.perf_counter()
        procs = [subprocess.Popen(cmd, cwd=ROOT, env=self.env(), stdout=subprocess.DEVNULL) for _ in range(workers)]
        if any(proc.wait() for proc in procs):
            raise SystemExit("billing worker --once failed")
        seconds = time.perf_counter() - started
        self.rows.append(
            Row(
                f"worker draining {self.sizes.batch:,} due retries, {workers} process(es)",
                f"{self.sizes.batch / seconds:,.0f} events/s",
                "",
                "",
                "(process start included)",
            )
        )

    def peak_rss_growth(self, action: Callable[[], object]) -> tuple[object, float, float]:
        """(what `action` returned, seconds, peak growth in MB of the gunicorn workers' summed RSS meanwhile)."""
        workers = _children(self.server.pid)
        before = sum(_rss(pid) for pid in workers)
        peak, done = [before], threading.Event()

        def sample():
            while not done.is_set():
                peak.append(sum(_rss(pid) for pid in workers))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        try:
            result = action()
        finally:
            done.set()
            sampler.join()
        return result, time.perf_counter() - started, (max(peak) - before) / 1024

    def export(self) -> None:
        data, seconds, growth = self.peak_rss_growth(lambda: self.request("GET", f"{API}/audit?format=csv")[1])
        lines = data.count(b"\n") - 1
        self.rows.append(
            Row(
                f"audit CSV export ({lines:,} rows)",
                f"{seconds:.1f} s, RSS +{growth:.1f} MB",
                "",
                "",
                "< 30 s, < 50 MB",
            )
        )

    def reconcile(self) -> None:
        """The whole reconcile report: every page of GET /reconcile (source events), when the endpoint exists."""
        spec, _ = self.get_json("/openapi.json")
        path = next((p for p in spec["paths"] if p.endswith("/reconcile")), None)
        if path is None:
            self.rows.append(Row("reconcile report", "not measured: /reconcile is not built yet", "", "", "< 30 s"))
            return

        deadline = time.monotonic() + RECONCILE_BUDGET

        def every_page() -> tuple[int, int, bool]:
            checked = mismatches = 0
            query: dict[str, object] = {"limit": 200}
            while True:
                page, _ = self.get_json(path, **query)
                checked, mismatches = checked + page["checked"], mismatches + len(page["mismatches"])
                if page["next_cursor"] is None or time.monotonic() > deadline:
                    return checked, mismatches, page["next_cursor"] is None
                query["cursor"] = page["next_cursor"]

        (checked, found, whole), seconds, growth = self.peak_rss_growth(every_page)
        extent = "every page" if whole else f"stopped after {RECONCILE_BUDGET} s: ~{checked / seconds:,.0f} customers/s"
        self.rows.append(
            Row(
                f"reconcile report, {extent} ({checked:,} customers, {found:,} mismatches)",
                f"{seconds:.1f} s, RSS +{growth:.1f} MB",
                "",
                "",
                "< 30 s, < 50 MB",
            )
        )

    def overrides(self) -> None:
        """16 clients on distinct users and on one hot user; 1 client first, for the latency without queueing."""
        n = self.sizes.requests
        distinct = [user_id(100 + i) for i in range(n)]
        for clients, label, users in (
            (1, "distinct users", distinct[: n // 4]),
            (16, "distinct users", distinct),
            (16, "one hot user", [user_id(1)] * n),
        ):
            _, latencies = self.in_threads(users, clients, self.override)
            p50, p99 = _percentile(latencies, 50), _percentile(latencies, 99)
            goal = {1: "(no queueing: what one request costs)", 16: "p99 < 50 ms"}[clients]
            self.rows.append(
                Row(
                    f"override, {clients} client{'s' if clients > 1 else ''}, {label}",
                    f"p50 {_ms(p50)}, p99 {_ms(p99)}",
                    "",
                    "",
                    goal if label == "distinct users" else "",
                )
            )

    def override(self, conn, user: str) -> float:
        body = json.dumps({"user_id": user, "credits_delta": 5, "reason": "bench"}).encode()
        headers = {"Content-Type": "application/json"}
        status, data, seconds = self.request("POST", f"{API}/entitlements/override", body, headers, conn=conn)
        if status != 200:
            raise SystemExit(f"override answered {status}: {data[:300]!r}")
        return seconds

    def audited_writes(self) -> None:
        n = self.sizes.requests
        rates = {}
        for writers in (1, 8):
            users = [user_id(2000 % self.sizes.subscriptions + i % 1000) for i in range(n)]
            seconds, _ = self.in_threads(users, writers, self.override)
            bare = self.bare_audited(n, writers)
            rates[writers] = n / seconds
            self.rows.append(
                Row(
                    f"audited writes (overrides), {writers} writer(s)",
                    f"{n / seconds:,.0f}/s",
                    f"{n / bare:,.0f}/s bare UPDATE+INSERT",
                    f"{(n / seconds) / (n / bare):.2f}",
                )
            )
        self.rows.append(
            Row(
                "audited writes: 8 writers / 1 writer",
                f"{rates[8] / rates[1]:.2f}x",
                "",
                "",
                "> 1 means the chain lock does not serialise everything",
            )
        )

    def bare_audited(self, n: int, writers: int) -> float:
        """A bare audited write: UPDATE a subscription and INSERT a row into a scratch log, one commit each."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS bench_bare_log (id bigserial PRIMARY KEY, body jsonb)")
        local = threading.local()

        def write(i: int) -> None:
            if not hasattr(local, "conn"):
                local.conn = psycopg.connect(self.url)
            with local.conn.transaction():
                local.conn.execute(
                    "UPDATE billing_subscriptions SET credits = credits + 5 WHERE user_id = %s",
                    (user_id(i % self.sizes.subscriptions),),
                )
                local.conn.execute("INSERT INTO bench_bare_log (body) VALUES (%s)", (json.dumps({"i": i}),))

        started = time.perf_counter()
        with ThreadPoolExecutor(writers) as pool:
            list(pool.map(write, range(n)))
        return time.perf_counter() - started

    def verify(self) -> None:
        out = self.flask("billing", "audit-verify")
        self.rows.append(Row("audit-verify after the run", out.strip()))

    def table(self) -> str:
        lines = ["| figure | billops | bare baseline | ratio | goal / note |", "|---|---|---|---|---|"]
        lines += [f"| {r.figure} | {r.value} | {r.baseline} | {r.ratio} | {r.goal} |" for r in self.rows]
        return "\n".join(lines)


def _subscription(index: int, now: int) -> dict:
    return {
        "id": f"sub_bench{index:07d}",
        "object": "subscription",
        "customer": f"cus_bench{index:07d}",
        "status": "active",
        "metadata": {"user_id": user_id(index)},
        "items": {
            "object": "list",
            "data": [{"price": {"id": "price_1PgagAB7WZ01zgkWpro00001"}, "current_period_end": now + 30 * 86400}],
        },
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _percentile(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def _children(pid: int) -> list[int]:
    """The gunicorn master's workers."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _rss(pid: int) -> int:
    """Resident set size in kB (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--smoke", action="store_const", dest="size", const="smoke")
    size.add_argument("--quick", action="store_const", dest="size", const="quick")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="server URL, no database")
    parser.add_argument("--database", default=f"billops_bench_run_{os.getpid()}")
    parser.add_argument("--keep-db", action="store_true", help="leave the database for a look afterwards")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument(
        "--existing", action="store_true", help="measure --database as filled earlier (upgraded first; not dropped)"
    )
    parser.add_argument("--only", type=lambda text: set(text.split(",")), help=f"some steps: {','.join(STEPS)}")
    args = parser.parse_args()
    sizes = SIZES[args.size or "full"]
    bench = Bench(sizes, args.pg, args.database)
    wanted = args.only or set(STEPS)
    started = time.perf_counter()
    try:
        if args.existing:
            bench.flask("db", "upgrade")  # as a release would
        else:
            bench.create_database()
        if "queue_mode" in wanted:  # its workers also run the housekeeping (grace expiry...) of any round
            bench.spawn_queue_side()
        if not args.existing:
            bench.fill()
        bench.start_servers()
        for step in (getattr(bench, name) for name in STEPS[:-2] if name in wanted):
            done = len(bench.rows)
            step()
            print(f"  done: {step.__name__} (t+{time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
            for row in bench.rows[done:]:  # as they come, so an interrupted run still shows what it measured
                print(f"    {row.figure}: {row.value} {row.baseline} {row.ratio}", file=sys.stderr, flush=True)
        bench.stop_servers()
        if "drain" in wanted:
            bench.drain(1)
            bench.drain(2)
        if "verify" in wanted:
            bench.verify()
    finally:
        bench.stop_servers()
        if not (args.keep_db or args.existing):
            bench.drop_database()
    header = (
        f"billops benchmark ({args.size or 'full'}: {sizes.events:,} events, {sizes.subscriptions:,} "
        f"subscriptions), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {time.perf_counter() - started:.0f} s"
    )
    report = f"{header}\n\n{bench.table()}\n"
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
