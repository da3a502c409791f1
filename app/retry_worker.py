"""The retry worker: runs due webhook retries, takes over stranded events, expires grace periods, and keeps house
(summarises suppressed failed authentications, purges expired idempotency keys).

`flask --app wsgi billing worker` loops until SIGTERM (or SIGINT), then finishes its batch and exits 0;
`--once` drains what is due now and exits. Any number of workers may share one PostgreSQL database.

On PostgreSQL an idle worker waits for the receiver's NOTIFY (`webhooks.QUEUE_CHANNEL`, sent when an event is
queued) rather than sleeping, so queued events are processed right behind the receiver; it still wakes after
`IDLE_SECONDS` for due retries and stranded events. On SQLite it polls every `IDLE_SECONDS`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from sqlalchemy.engine import Engine

from app import clock
from app.extensions import db
from app.services import grace, idempotency, keys, webhooks
from app.services.actor import Actor
from app.services.webhooks import EventResult

log = logging.getLogger(__name__)

BATCH_SIZE = webhooks.BATCH_SIZE  # events per round, one transaction; a stop request is honoured between rounds
IDLE_SECONDS = 5.0  # the longest wait when nothing was due (a notification ends it early)
# libpq keepalives on the LISTEN connection: a peer gone without a word is noticed in about a minute.
LISTEN_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


class Wakeup:
    """How an idle worker waits: until a NOTIFY on `channel` (PostgreSQL), `interrupt()`, or the timeout.

    It LISTENs on a dedicated autocommit connection (`conninfo`; None, as on SQLite, means no notifications: every
    wait lasts its timeout). A lost connection is made again at the next wait; while the database cannot be
    reached, waits last their timeout, so the worker falls back to polling and never stalls.
    """

    def __init__(self, conninfo: str | None, channel: str) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self._conn: psycopg.Connection | None = None
        self._bell, self._ring = os.pipe()  # interrupt() writes; a wait watches the read end
        os.set_blocking(self._bell, False)
        os.set_blocking(self._ring, False)

    @classmethod
    def for_engine(cls, engine: Engine, channel: str) -> Wakeup:
        if engine.dialect.name != "postgresql":
            return cls(None, channel)
        return cls(engine.url.set(drivername="postgresql").render_as_string(hide_password=False), channel)

    def listen(self) -> bool:
        """Connect and LISTEN, unless listening already; False (and a warning) when the database refuses."""
        if self._conn is not None or self.conninfo is None:
            return self._conn is not None
        try:
            conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10, **LISTEN_KEEPALIVES)
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except psycopg.Error as exc:
            log.warning("cannot LISTEN for queued events (%s); polling until it can", exc)
            return False
        self._conn = conn
        return True

    def wait(self, timeout: float) -> bool:
        """True when events may be waiting: a notification came, or the connection was made again (what was sent
        while it was down is lost); False when the timeout passed or `interrupt()` was called."""
        if self._conn is None:
            if self.conninfo is not None and self.listen():
                return True
            self._watch([], timeout)
            return False
        try:
            return self._received() or (bool(self._watch([self._conn.fileno()], timeout)) and self._received())
        except psycopg.Error as exc:
            log.warning("lost the LISTEN connection (%s); listening again", exc)
            self.close_connection()
            return self.wait(timeout)  # listening again at once, or waiting out the timeout

    def interrupt(self) -> None:
        """End the current (or next) wait now; safe in a signal handler."""
        with contextlib.suppress(BlockingIOError):  # the pipe is full: rung often enough already
            os.write(self._ring, b"!")

    def close_connection(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def close(self) -> None:
        self.close_connection()
        os.close(self._bell)
        os.close(self._ring)

    def _received(self) -> bool:
        """Read every notification that arrived, without waiting; raises when the server hung up."""
        return len(list(self._conn.notifies(timeout=0))) > 0

    def _watch(self, fds: list[int], timeout: float) -> list[int]:
        """The `fds` readable within `timeout` (none when interrupted: the interruption is used up)."""
        readable, _, _ = select.select([*fds, self._bell], [], [], timeout)
        if self._bell in readable:
            while True:
                try:
                    os.read(self._bell, 64)
                except BlockingIOError:
                    return []
        return readable


@dataclass
class RoundReport:
    events: list[EventResult] = field(default_factory=list)
    expired_grace: list[str] = field(default_factory=list)
    auth_summaries: int = 0  # `auth.failed` summary rows written for minutes that are over
    idempotency_keys_purged: int = 0

    def add(self, other: RoundReport) -> None:
        self.events += other.events
        self.expired_grace += other.expired_grace
        self.auth_summaries += other.auth_summaries
        self.idempotency_keys_purged += other.idempotency_keys_purged


class RetryWorker:
    def __init__(self, *, grace_days: int, batch_size: int = BATCH_SIZE, idle_seconds: float = IDLE_SECONDS) -> None:
        self.grace_days = grace_days
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self._stop = threading.Event()
        self._wakeup: Wakeup | None = None  # while run_forever runs

    def stop(self, *_signal_args: object) -> None:
        """Ask the loop to exit after the current batch (at once when it is waiting)."""
        self._stop.set()
        if self._wakeup is not None:
            self._wakeup.interrupt()

    def run_round(self) -> RoundReport:
        """One batch of due events, then the grace periods whose end has passed and the housekeeping, at the
        clock's current time."""
        now = clock.utcnow()
        try:
            events = webhooks.drain_due(grace_days=self.grace_days, now=now, limit=self.batch_size)
            expired = grace.expire_grace_periods(actor=Actor.worker(), now=now)
            summaries = keys.flush_auth_failures(now)
            purged = idempotency.purge_expired_idempotency_keys(now)
        finally:
            # A round is the worker's request: end its session, so the events it loaded do not pile up (and get
            # expired again at every later commit) over a long drain.
            db.session.remove()
        for result in events:
            log.info("event %s: %s%s", result.event_id, result.status, f" ({result.error})" if result.error else "")
        for user_id in expired:
            log.info("grace period of %s expired", user_id)
        return RoundReport(events, expired, summaries, purged)

    def drain(self) -> RoundReport:
        """Run rounds until one finds less than a full batch: everything due now is done."""
        total = RoundReport()
        while True:
            report = self.run_round()
            total.add(report)
            if len(report.events) < self.batch_size:
                return total

    def install_signal_handlers(self) -> None:
        """Make SIGTERM and SIGINT stop the loop after its batch instead of killing it mid-way."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run_forever(self) -> None:
        """Loop until `stop` (see install_signal_handlers); the batch under way is finished first. When a round
        finds less than a full batch, wait for a notification, at most `idle_seconds`."""
        self._wakeup = Wakeup.for_engine(db.engine, webhooks.QUEUE_CHANNEL)
        listening = self._wakeup.listen()  # before the first round: what is queued during it wakes the next
        waits = "until a NOTIFY" if listening else "polling"
        log.info("retry worker started (batch %s, idle: %s, at most %s s)", self.batch_size, waits, self.idle_seconds)
        try:
            while not self._stop.is_set():
                report = self.run_round()
                if len(report.events) < self.batch_size and not self._stop.is_set():
                    self._wakeup.wait(self.idle_seconds)
        finally:
            wakeup, self._wakeup = self._wakeup, None
            wakeup.close()
        log.info("retry worker stopped")
