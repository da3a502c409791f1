"""The retry worker: runs due webhook retries, takes over stranded events, expires grace periods, and keeps house
(summarises suppressed failed authentications, purges expired idempotency keys).

`flask --app wsgi billing worker` loops until SIGTERM (or SIGINT), then finishes its batch and exits 0;
`--once` drains what is due now and exits. Any number of workers may share one PostgreSQL database.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, field

from app import clock
from app.extensions import db
from app.services import grace, idempotency, keys, webhooks
from app.services.actor import Actor
from app.services.webhooks import EventResult

log = logging.getLogger(__name__)

BATCH_SIZE = webhooks.BATCH_SIZE  # events per round, one transaction; a stop request is honoured between rounds
IDLE_SECONDS = 5.0  # wait when nothing was due


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

    def stop(self, *_signal_args: object) -> None:
        """Ask the loop to exit after the current batch."""
        self._stop.set()

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
        """Loop until `stop` (see install_signal_handlers); the batch under way is finished first."""
        log.info("retry worker started (batch %s, idle wait %s s)", self.batch_size, self.idle_seconds)
        while not self._stop.is_set():
            report = self.run_round()
            if len(report.events) < self.batch_size:
                self._stop.wait(self.idle_seconds)
        log.info("retry worker stopped")
