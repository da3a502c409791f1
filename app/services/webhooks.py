"""The webhook pipeline: verify the signature, store, commit, process; retry with backoff; replay.

In queue mode (`WEBHOOK_PROCESSING=queue`) the receiver only stores the event, due at once, and on PostgreSQL
notifies `QUEUE_CHANNEL` in the same transaction; the workers (app/retry_worker.py) process it.

Every run of a handler holds the event's row lock for its whole transaction (FOR UPDATE, SKIP LOCKED for the
receiver and the workers), so no event is ever processed twice at once. The handler runs in a savepoint: when it
fails, its changes roll back but the attempt, the error and the next retry are still committed. The worker and
replays run up to BATCH_SIZE events per transaction, each handler in its own savepoint (docs/architecture.md,
"Webhook batches").
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Row, Select, TextClause, bindparam, insert, inspect, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, defer
from sqlalchemy.orm.attributes import set_committed_value

from app.models.events import AttemptTrigger, BillingEvent, EventAttempt, EventStatus
from app.services import audit, handlers
from app.services.actor import Actor, Channel
from app.services.errors import Conflict, DomainError, InvalidInput, InvalidJSON, InvalidSignature, NotFound
from app.services.events import EventFilter, filtered
from app.services.handlers import HandlerContext, Outcome
from app.services.inputs import loads_json
from app.services.permissions import Permission, require
from app.services.uow import is_contention, unit_of_work

log = logging.getLogger(__name__)

SIGNATURE_TOLERANCE = timedelta(seconds=300)  # both ways, as Stripe's libraries allow (they check the past only)
# A stored event still `received` this long after it arrived lost its process before it was handled.
STRANDED_AFTER = timedelta(minutes=1)
# Wait after the 1st, 2nd, ... failed attempt. Ten attempts over about 2.9 days; the tenth failure is `dead`.
RETRY_DELAYS = tuple(
    timedelta(minutes=minutes) for minutes in (1, 5, 15, 60, 3 * 60, 6 * 60, 12 * 60, 24 * 60, 24 * 60)
)
# Events per transaction when the worker drains or a replay runs (docs/architecture.md, "Webhook batches"): below
# PostgreSQL's 64 cached subtransactions per transaction, one savepoint per handler.
BATCH_SIZE = 50
MAX_REPLAY_IDS = 1000
MAX_REPLAY_LIMIT = 10_000
DEFAULT_REPLAY_LIMIT = 100
_CLAIMABLE = (EventStatus.RECEIVED, EventStatus.FAILED)
# NOTIFY'd when a queued event is stored: PostgreSQL delivers it at commit, so a woken worker sees the row.
QUEUE_CHANNEL = "billops_events"
# The receiver's INSERT as SQL text, the same on both databases: SQLAlchemy 2.0 compiles a dialect's
# `insert().on_conflict_do_nothing()` again at every execution (it has no cache key), a third of the CPU of a queued
# delivery. A duplicate inserts no row: it returns no id and (queued) notifies nobody.
_INSERT_EVENT = (
    "INSERT INTO billing_events (event_id, type, user_id, payload, status, attempts, created_at, received_at,"
    " updated_at, next_retry_at) VALUES (:event_id, :type, :user_id, :payload, :status, :attempts, :created_at,"
    " :received_at, :updated_at, :next_retry_at) ON CONFLICT (event_id) DO NOTHING RETURNING id"
)
_INSERT_EVENT_AND_NOTIFY = (
    f"WITH inserted AS ({_INSERT_EVENT}) SELECT id, pg_notify('{QUEUE_CHANNEL}', '') FROM inserted"  # noqa: S608 (constants)
)
_RECEIVED_COLUMNS = (
    "event_id",
    "type",
    "user_id",
    "payload",
    "status",
    "attempts",
    "created_at",
    "received_at",
    "updated_at",
    "next_retry_at",
)


@dataclass(frozen=True)
class Receipt:
    """The receiver's answer: the event is stored (now or before, for a duplicate)."""

    event_id: str
    status: EventStatus
    duplicate: bool


@dataclass(frozen=True)
class EventResult:
    event_id: str
    status: EventStatus
    error: str | None


@dataclass(frozen=True)
class ReplayReport:
    dry_run: bool
    replayed: int
    results: list[EventResult]


# -- verifying and reading a delivery ---------------------------------------------------------------------------


def verify_signature(payload: bytes, header: str | None, secrets: Sequence[str], *, now: datetime) -> None:
    """Check `Stripe-Signature` (`t=...,v1=...`) as Stripe signs it; InvalidSignature says what is wrong."""
    if not secrets:
        raise InvalidSignature("No WEBHOOK_SECRET is configured, so no webhook can be verified; set it and resend.")
    timestamp, signatures = _parse_signature_header(header)
    age = now.timestamp() - timestamp  # in seconds: `t` may lie beyond the years a datetime can hold
    if abs(age) > SIGNATURE_TOLERANCE.total_seconds():
        raise InvalidSignature(
            f"The signature timestamp is {abs(age):.0f} s {'old' if age > 0 else 'ahead'}; "
            f"at most {SIGNATURE_TOLERANCE.seconds} s are accepted."
        )
    expected = [_signature(payload, secret, timestamp) for secret in secrets]
    # Every pair is compared, in constant time, so the timing says nothing about which secret or signature matched.
    matches = [hmac.compare_digest(want, got) for want in expected for got in signatures]
    if not any(matches):
        raise InvalidSignature("No v1 signature matches the body with any configured secret.")


def signature_header(payload: bytes, secret: str, *, timestamp: int) -> str:
    """The `Stripe-Signature` header a sender holding `secret` puts on `payload` at `timestamp`."""
    return f"t={timestamp},v1={_signature(payload, secret, timestamp)}"


def _signature(payload: bytes, secret: str, timestamp: int) -> str:
    """Stripe's v1 scheme: hex HMAC-SHA256 of `<timestamp>.<raw body>`, keyed with the whole `whsec_...` secret."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()


def _parse_signature_header(header: str | None) -> tuple[int, list[str]]:
    if not header:
        raise InvalidSignature("The Stripe-Signature header is missing.")
    timestamp, signatures = None, []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise InvalidSignature("The Stripe-Signature header is malformed: expected t=...,v1=...")
        if key == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value.encode("ascii", "replace").decode())
    if timestamp is None or not signatures:
        raise InvalidSignature("The Stripe-Signature header needs a numeric t=... and at least one v1=...")
    return timestamp, signatures


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object the database can store (the input rule of `app.services.inputs`), or InvalidJSON."""
    try:
        document = loads_json(raw)
    except ValueError as exc:  # UnsafeValue names the field; any other says why the document is unreadable
        raise InvalidJSON(f"The body is not a JSON object billops can store: {str(exc)[:200]}.") from None
    if not isinstance(document, dict):
        raise InvalidJSON("The body must be a JSON object.")
    return document


def _event_fields(document: dict[str, Any]) -> tuple[str, str, datetime]:
    """The event's id, type and provider time, or InvalidJSON."""
    event_id, event_type, created = document.get("id"), document.get("type"), document.get("created")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 255:
        raise InvalidJSON('The event needs an "id" string (at most 255 characters).')
    if not isinstance(event_type, str) or not 0 < len(event_type) <= 100:
        raise InvalidJSON('The event needs a "type" string (at most 100 characters).')
    if type(created) is not int or not 0 <= created <= 253402300799:
        raise InvalidJSON('The event needs "created", a Unix time in seconds.')
    return event_id, event_type, datetime.fromtimestamp(created, UTC)


# -- receiving --------------------------------------------------------------------------------------------------


def receive(
    raw: bytes, signature: str | None, *, secrets: Sequence[str], grace_days: int, now: datetime, queue: bool = False
) -> Receipt:
    """Verify, store and commit a delivery, then process it; a duplicate is stored once and not processed again.
    With `queue`, store it due at once and leave it to the workers (status `received`).

    Once the row is committed this never raises: a handler failure is kept on the event for the worker to retry.
    """
    verify_signature(raw, signature, secrets, now=now)
    document = parse_json_object(raw)
    event_id, event_type, created_at = _event_fields(document)
    with unit_of_work() as session:
        pk = _insert(session, document, event_id, event_type, created_at, now, queue=queue)
    if pk is None:
        return Receipt(event_id, _status_of(event_id), duplicate=True)
    if queue:
        return Receipt(event_id, EventStatus.RECEIVED, duplicate=False)
    try:
        result = process_received(pk, grace_days=grace_days, now=now)
    except Exception:  # the event is safe in the database; the worker claims it after STRANDED_AFTER
        log.exception("processing webhook event %s failed; the retry worker will take it over", event_id)
        result = None
    return Receipt(event_id, result.status if result else _status_of(event_id), duplicate=False)


def _insert(
    session: Session,
    document: dict[str, Any],
    event_id: str,
    event_type: str,
    created_at: datetime,
    now: datetime,
    *,
    queue: bool,
) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING: the new row's id, or None when the event id is stored already.

    A queued event is due at once; on PostgreSQL the same statement notifies the workers when it stored a row.
    """
    notify = queue and session.get_bind().dialect.name == "postgresql"
    return session.scalar(
        _insert_statement(notify),
        {
            "event_id": event_id,
            "type": event_type,
            "user_id": _metadata_user_id(document),
            "payload": document,
            "status": EventStatus.RECEIVED,
            "attempts": 0,
            "created_at": created_at,
            "received_at": now,
            "updated_at": now,
            # Queued: due now. Inline: when the worker takes it over if this process dies before handling it.
            "next_retry_at": now if queue else now + STRANDED_AFTER,
        },
    )


@cache
def _insert_statement(notify: bool) -> TextClause:
    """The receiver's INSERT (with `notify`, wrapped to NOTIFY the workers once per stored row), typed as the
    table's columns, so values are bound as an ORM insert binds them."""
    columns = BillingEvent.__table__.columns
    return text(_INSERT_EVENT_AND_NOTIFY if notify else _INSERT_EVENT).bindparams(
        *(bindparam(name, type_=columns[name].type) for name in _RECEIVED_COLUMNS)
    )


def _metadata_user_id(document: dict[str, Any]) -> str | None:
    """`data.object.metadata.user_id` when the payload names the user (the handler fills it in otherwise)."""
    data = document.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    return user_id if isinstance(user_id, str) and 0 < len(user_id) <= 64 else None


def _status_of(event_id: str) -> EventStatus:
    with unit_of_work() as session:
        return session.scalar(select(BillingEvent.status).where(BillingEvent.event_id == event_id))


def process_received(pk: int, *, grace_days: int, now: datetime) -> EventResult | None:
    """Process a just-stored event (trigger `receive`); None if a worker holds it already."""
    job = _Job(AttemptTrigger.RECEIVE, Channel.API, grace_days, now)
    results = _run_batch(job, _Claim((BillingEvent.id == pk, BillingEvent.status == EventStatus.RECEIVED)))
    return results[0] if results else None


# -- retrying ---------------------------------------------------------------------------------------------------


def retry_delay(attempts: int) -> timedelta | None:
    """How long to wait after `attempts` failed attempts; None once the schedule is spent (the event is dead)."""
    return RETRY_DELAYS[attempts - 1] if 0 < attempts <= len(RETRY_DELAYS) else None


def process_next_due(*, grace_days: int, now: datetime) -> EventResult | None:
    """Claim one due event (a failed one whose retry time came, or a stranded `received` one) and run it."""
    results = _process_due(grace_days=grace_days, now=now, size=1)
    return results[0] if results else None


def drain_due(*, grace_days: int, now: datetime, limit: int | None = None) -> list[EventResult]:
    """Process due events, BATCH_SIZE per transaction, until none is due at `now` (or `limit` were run)."""
    results: list[EventResult] = []
    while limit is None or len(results) < limit:
        size = BATCH_SIZE if limit is None else min(BATCH_SIZE, limit - len(results))
        batch = _process_due(grace_days=grace_days, now=now, size=size)
        results += batch
        if len(batch) < size:
            break
    return results


def _process_due(*, grace_days: int, now: datetime, size: int) -> list[EventResult]:
    """Claim up to `size` due events, skipping those another worker holds, and run them in one transaction."""
    due = _Claim((BillingEvent.status.in_(_CLAIMABLE), BillingEvent.next_retry_at <= now), limit=size)
    return _run_batch(_Job(AttemptTrigger.RETRY, Channel.WORKER, grace_days, now), due, fall_back=True)


# -- running handlers -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    """The events one transaction locks and runs: those matching `where`, at most `limit` of them.

    Without `wait` (the receiver, the worker) rows another transaction holds are skipped and the oldest due are
    claimed first. With `wait` (a replay) they are waited for and locked in id order (ids never change, so two
    replays never wait for each other in a cycle), and listed in the order of `order`, their ids. Without
    `payloads` the payloads are left unread: a replay reads only those of the events it runs a handler on
    (`_read_payloads`). Handlers run in `_in_lock_order`; results come back in the claim's order.
    """

    where: tuple[Any, ...]
    limit: int = 1
    wait: bool = False
    order: tuple[int, ...] = ()
    payloads: bool = True

    def lock(self, session: Session) -> list[BillingEvent]:
        if session.get_bind().dialect.name == "sqlite":
            # No row locks on SQLite: take the database's write lock first, so claims queue up one at a time.
            session.execute(text("UPDATE billing_events SET id = id WHERE 0 = 1"))
        stmt = (
            select(BillingEvent)
            .where(*self.where)
            .order_by(*((BillingEvent.id,) if self.wait else (BillingEvent.next_retry_at, BillingEvent.id)))
            .limit(self.limit)
            .with_for_update(skip_locked=not self.wait)
            .execution_options(populate_existing=True)  # the values under the lock, not those of an earlier read
        )
        if not self.payloads:
            stmt = stmt.options(defer(BillingEvent.payload))
        events = list(session.scalars(stmt))
        if self.order:
            position = {pk: n for n, pk in enumerate(self.order)}
            events.sort(key=lambda event: position[event.id])
        return events

    def alone(self, pk: int) -> _Claim:
        """This claim narrowed to one of its events, for a transaction of its own."""
        return replace(self, where=(*self.where, BillingEvent.id == pk), limit=1)


@dataclass(frozen=True)
class _Job:
    """How claimed events run: the attempts' trigger, the webhook actor's channel, and for a replay the admin
    who asked (each event also gets a `webhook.replay` audit row by them, with `reason`)."""

    trigger: AttemptTrigger
    channel: Channel
    grace_days: int
    now: datetime
    admin: Actor | None = None
    reason: str | None = None

    def trigger_for(self, event: BillingEvent) -> AttemptTrigger:
        """The attempt's trigger: a worker's first run of an event (queued, or stranded by a receiver that died) is
        its `receive` attempt, not a retry of one that never happened."""
        first = self.trigger is AttemptTrigger.RETRY and event.attempts == 0
        return AttemptTrigger.RECEIVE if first else self.trigger

    def runs_handler(self, event: BillingEvent) -> bool:
        """Whether `run` runs the event's handler: not for a replay of a processed event."""
        return not (self.trigger is AttemptTrigger.REPLAY and event.status is EventStatus.PROCESSED)

    def run(self, session: Session, event: BillingEvent, *, among_others: bool) -> _Attempt:
        """Run the handler once on the locked `event`; the attempt is written by `_save`."""
        before = {"event_id": event.event_id, "status": event.status, "attempts": event.attempts}
        started = time.monotonic()
        if not self.runs_handler(event):
            at = event.processed_at.isoformat() if event.processed_at else "an earlier attempt"
            outcome = Outcome(
                EventStatus.PROCESSED, f"already processed at {at}; a replay applies nothing twice", event.user_id
            )
        else:
            ctx = HandlerContext(Actor.webhook(event.event_id, self.channel), self.now, self.grace_days)
            outcome = _handle(session, event, ctx, among_others=among_others)
        duration_ms = round((time.monotonic() - started) * 1000)
        attempt = _Attempt.of(event, self.trigger_for(event), outcome, self.now, duration_ms)
        if self.admin is not None:
            after = {"event_id": event.event_id, "status": attempt.status, "error": attempt.last_error}
            audit.record(
                session, self.admin, "webhook.replay", attempt.user_id, before, after, now=self.now, reason=self.reason
            )
        return attempt


@dataclass(frozen=True)
class _Attempt:
    """One run of an event's handler: the event's columns after it, and its attempt row."""

    pk: int
    event_id: str
    trigger: AttemptTrigger
    status: EventStatus
    attempts: int
    user_id: str | None
    next_retry_at: datetime | None
    last_error: str | None
    processed_at: datetime | None
    note: str | None  # the attempt's error: why it failed, or why it was ignored (stale, not current, ...)
    duration_ms: int

    @classmethod
    def of(
        cls, event: BillingEvent, trigger: AttemptTrigger, outcome: Outcome, now: datetime, duration_ms: int
    ) -> _Attempt:
        """A failure is retried on the schedule (`dead` once it is spent); anything else is done with."""
        attempts = event.attempts + 1
        common = {
            "pk": event.id,
            "event_id": event.event_id,
            "trigger": trigger,
            "attempts": attempts,
            "user_id": outcome.user_id or event.user_id,
            "note": outcome.note,
            "duration_ms": duration_ms,
        }
        if outcome.status is EventStatus.FAILED:
            delay = retry_delay(attempts)
            return cls(
                **common,
                status=EventStatus.FAILED if delay else EventStatus.DEAD,
                next_retry_at=now + delay if delay else None,
                last_error=outcome.note,
                processed_at=event.processed_at,
            )
        return cls(
            **common, status=outcome.status, next_retry_at=None, last_error=None, processed_at=event.processed_at or now
        )

    @property
    def result(self) -> EventResult:
        return EventResult(self.event_id, self.status, None if self.status is EventStatus.PROCESSED else self.note)


def _run_batch(job: _Job, claim: _Claim, *, fall_back: bool = False) -> list[EventResult]:
    """Run the events `claim` locks in one transaction: each handler in a savepoint of its own, the attempts
    written together, the audit rows linked at the end (`audit.batched`, so the chain lock is taken last).

    If anything fails outside a handler's savepoint, or a handler meets a deadlock with another batch, the whole
    transaction rolls back; with `fall_back`, each claimed event then runs again in a transaction of its own, so
    a batch is neither lost nor retried whole forever.
    """
    claimed: list[int] = []
    try:
        with unit_of_work() as session, audit.batched(session):
            events = claim.lock(session)
            claimed = [event.id for event in events]
            _read_payloads(session, [event for event in events if job.runs_handler(event)])
            ran = {event.id: job.run(session, event, among_others=len(events) > 1) for event in _in_lock_order(events)}
            attempts = [ran[pk] for pk in claimed]
            _save(session, attempts, job.now)
    except Exception as exc:
        if not (fall_back and claimed):
            raise
        if isinstance(exc, Conflict):  # a deadlock with another batch: to be expected now and then
            log.warning("a batch of %d events lost a lock race; running each alone: %s", len(claimed), exc.detail)
        else:
            log.exception("a batch of %d events failed; running each in a transaction of its own", len(claimed))
        return [result for pk in claimed for result in _run_batch(job, claim.alone(pk))]
    return [attempt.result for attempt in attempts]


def _in_lock_order(events: list[BillingEvent]) -> list[BillingEvent]:
    """`events` in the order of the customers their handlers lock first (by provider customer id), each
    customer's events still in claim order; events that name none (catalog events, unreadable payloads, replays
    that run no handler) last.

    Two batches running at once (two workers) then lock the customers they share in the same order, instead of
    deadlocking when one holds a customer the other wants next.
    """

    def customer(event: BillingEvent) -> tuple[bool, str]:
        if "payload" in inspect(event).unloaded:  # a replay of a processed event: no handler, no lock
            return True, ""
        try:
            implied = handlers.implied_by(event.type, event.payload)
        except Exception:  # the handler will say what is wrong with the payload
            implied = None
        customer_id = implied.provider_customer_id if implied else None
        return customer_id is None, customer_id or ""

    return sorted(events, key=customer)


def _read_payloads(session: Session, events: list[BillingEvent]) -> None:
    """Read the payloads a claim left unread, of all `events` in one statement."""
    unread = {event.id: event for event in events if "payload" in inspect(event).unloaded}
    if unread:
        stmt = select(BillingEvent.id, BillingEvent.payload).where(BillingEvent.id.in_(unread))
        for pk, payload in session.execute(stmt):
            set_committed_value(unread[pk], "payload", payload)


def _handle(session: Session, event: BillingEvent, ctx: HandlerContext, *, among_others: bool) -> Outcome:
    """The handler's outcome; a failure rolls back its savepoint and comes back as a `failed` outcome.

    A deadlock or lock timeout says nothing about the event: among other events it fails the whole batch instead
    (see `_run_batch`).
    """
    try:
        with session.begin_nested():
            outcome = handlers.handle(session, event, ctx)
            session.flush()
        return outcome
    except DomainError as exc:
        return Outcome(EventStatus.FAILED, exc.detail[:1000])
    except Exception as exc:  # a bug or a payload shape nobody foresaw: keep the event, say what happened
        if among_others and isinstance(exc, OperationalError) and is_contention(exc):
            raise
        log.exception("handler for %s %s raised", event.type, event.event_id)
        first_line = (str(exc).splitlines() or [""])[0]
        return Outcome(EventStatus.FAILED, f"{type(exc).__name__}: {first_line}"[:1000])


def _save(session: Session, attempts: list[_Attempt], now: datetime) -> None:
    """Write the runs' event columns and attempt rows: one statement each, however many events."""
    if not attempts:
        return
    columns = ("status", "attempts", "user_id", "next_retry_at", "last_error", "processed_at")
    session.execute(
        update(BillingEvent),
        [{"id": a.pk, "updated_at": now, **{name: getattr(a, name) for name in columns}} for a in attempts],
    )
    session.execute(
        insert(EventAttempt).execution_options(render_nulls=True),  # one column set: one statement
        [
            {
                "event_pk": a.pk,
                "at": now,
                "trigger": a.trigger,
                "outcome": a.status,
                "error": a.note,
                "duration_ms": a.duration_ms,
            }
            for a in attempts
        ],
    )


# -- replaying --------------------------------------------------------------------------------------------------


def replay_events(
    *,
    event_id: str | None = None,
    event_ids: Sequence[str] | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    reason: str | None = None,
    actor: Actor,
    grace_days: int,
    now: datetime,
    **filters: Any,
) -> ReplayReport:
    """Re-run the handlers of the chosen events on their stored payloads (one id, a list, or a filter).

    `filters` are EventFilter's fields. A processed event is never applied twice. Each replayed event gains a
    `replay` attempt and a `webhook.replay` audit row by `actor` (with `reason`), in the same transaction.
    """
    require(actor, Permission.REPLAY_EVENTS)
    chosen = _replay_selection(event_id, event_ids, EventFilter(**filters), limit)
    if dry_run:
        return ReplayReport(True, 0, [EventResult(e.event_id, e.status, e.last_error) for e in chosen])
    job = _Job(AttemptTrigger.REPLAY, actor.channel, grace_days, now, admin=actor, reason=reason)
    results: list[EventResult] = []
    for start in range(0, len(chosen), BATCH_SIZE):
        pks = tuple(event.id for event in chosen[start : start + BATCH_SIZE])
        claim = _Claim((BillingEvent.id.in_(pks),), limit=len(pks), wait=True, order=pks, payloads=False)
        results += _run_batch(job, claim, fall_back=True)
    return ReplayReport(False, len(results), results)


def _replay_selection(
    event_id: str | None, event_ids: Sequence[str] | None, filters: EventFilter, limit: int | None
) -> list[Row]:
    modes = [name for name, used in (("event_id", event_id), ("event_ids", event_ids)) if used is not None]
    if not filters.empty:
        modes.append("filter")
    if len(modes) != 1:
        raise InvalidInput(
            "event_id",
            "give exactly one of event_id, event_ids, or a filter (status, type, user_id, since, until)"
            + (f"; got {' and '.join(modes)}" if modes else ""),
        )
    if modes[0] == "filter":
        limit = DEFAULT_REPLAY_LIMIT if limit is None else limit
        if not 1 <= limit <= MAX_REPLAY_LIMIT:
            raise InvalidInput("limit", f"must be between 1 and {MAX_REPLAY_LIMIT}")
        # Oldest first, so that where two events touch one subscription the newer one ends up applied.
        stmt = _summaries(filtered(filters)).order_by(BillingEvent.created_at, BillingEvent.id).limit(limit)
        with unit_of_work() as session:
            return list(session.execute(stmt))
    if limit is not None:
        raise InvalidInput("limit", "applies to a filter only")
    wanted = [event_id] if event_id is not None else list(dict.fromkeys(event_ids or ()))
    if not 1 <= len(wanted) <= MAX_REPLAY_IDS:
        raise InvalidInput("event_ids", f"list between 1 and {MAX_REPLAY_IDS} event ids")
    with unit_of_work() as session:
        chosen = _summaries(select(BillingEvent).where(BillingEvent.event_id.in_(wanted)))
        found = {summary.event_id: summary for summary in session.execute(chosen)}
    missing = [name for name in wanted if name not in found]
    if missing:
        raise NotFound(f"No event has the id {', '.join(map(repr, missing[:10]))}; nothing was replayed.")
    return [found[name] for name in wanted]


def _summaries(stmt: Select) -> Select:
    """`stmt` reading only what a replay needs to choose and report: plain rows, not loaded events (a session
    holding 10,000 events would expire every one of them at each of the 10,000 commits that follow)."""
    return stmt.with_only_columns(BillingEvent.id, BillingEvent.event_id, BillingEvent.status, BillingEvent.last_error)
