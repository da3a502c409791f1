"""Benchmark data: many customers, subscriptions, webhook events and audit rows, written in bulk.

Deterministic (a seed and the row's position decide every value) and idempotent: rows are written in chunks of
a fixed size, each chunk in one transaction, and a chunk whose last row exists already is skipped, so running it
again adds nothing and a larger run adds only the missing tail. PostgreSQL gets COPY; SQLite (tests) multi-row
Core inserts. Audit rows are linked and signed by `audit.seal_batch`, so `billing audit-verify` passes afterwards.

Shapes: payloads are the Stripe fixtures in app/data/stripe/ with this data's ids; about 2 % of events failed
(retry parked until 2030, so no worker picks them up unasked), 0.1 % dead, 2 % ignored; 5 % of events go to 20
hot users, the rest spread over every subscription. Each subscription then holds what its events imply (as a
production database does), except one in MISMATCH_EVERY, left as first written: reconcile has ~1 % to report.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import JSON, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from app.models.audit import AuditEntry
from app.models.customers import Customer
from app.models.events import BillingEvent, EventAttempt
from app.models.grace import GracePeriod
from app.models.plans import Plan
from app.models.subscriptions import Subscription
from app.services import audit, evidence, handlers, reconcile
from app.services.catalog import load_catalog
from app.services.errors import RuleViolation
from app.services.uow import unit_of_work

CHUNK = 5000  # rows per transaction; part of what decides the data (each chunk has its own random stream)
EPOCH = datetime(2025, 12, 1, tzinfo=UTC)  # the first event's provider time
EVENT_SPACING = timedelta(seconds=30)  # 1M events span about a year
RETRY_PARKED = datetime(2030, 1, 1, tzinfo=UTC)  # failed events' next retry: not due, until a benchmark says so
USER_PREFIX = "bench-"
HOT_USERS = 20
MISMATCH_EVERY = 100  # one subscription in this many keeps its first, random state: a mismatch for reconcile
SHAPES = Path(__file__).resolve().parent.parent / "data" / "stripe"

EVENT_MIX = {  # type: share of events, roughly a subscription business's webhook traffic
    "invoice.paid": 30,
    "invoice.payment_succeeded": 24,
    "customer.subscription.updated": 24,
    "customer.subscription.created": 8,
    "invoice.payment_failed": 8,
    "customer.subscription.deleted": 3,
    "price.updated": 2,
    "product.updated": 1,
}
PLAN_MIX = {"starter": 45, "pro": 35, "team": 10, "pro-annual": 8, "legacy-basic": 2}
STATUS_MIX = {"active": 78, "trialing": 8, "past_due": 5, "canceled": 6, "unpaid": 3}
OUTCOME_MIX = {"processed": 959, "ignored": 20, "failed": 20, "dead": 1}  # per mille
ENVELOPE_FIELDS = ("evt", "created", "cus", "sub", "user", "price", "period_end", "status", "obj")


@dataclass
class BenchReport:
    customers: int = 0
    events: int = 0
    audit_rows: int = 0
    chunks_skipped: int = 0
    subscriptions_aligned: int = 0
    notes: list[str] = field(default_factory=list)


def user_id(index: int) -> str:
    return f"{USER_PREFIX}user-{index:07d}"


def event_id(index: int) -> str:
    return f"evt_bench_{index:09d}"


def load_bench_data(events: int, subscriptions: int, *, seed: int = 15, force: bool = False) -> BenchReport:
    """Add the missing part of `subscriptions` bench users (customer, subscription) and `events` events."""
    if events and not subscriptions:
        raise RuleViolation("bench events need bench subscriptions to name; pass --subscriptions 1 or more")
    if not force:
        _refuse_foreign_data()
    report = BenchReport()
    _add_plans()
    for start in range(0, subscriptions, CHUNK):
        stop = min(start + CHUNK, subscriptions)
        _run_chunk(report, Customer.user_id, user_id, _write_users, seed, range(start, stop))
    writer = _event_writer(_templates(), subscriptions)
    for start in range(0, events, CHUNK):
        stop = min(start + CHUNK, events)
        _run_chunk(report, BillingEvent.event_id, event_id, writer, seed, range(start, stop))
    for start in range(0, subscriptions, CHUNK):
        report.subscriptions_aligned += _agree_with_events(range(start, min(start + CHUNK, subscriptions)))
    return report


def _refuse_foreign_data() -> None:
    with unit_of_work() as session:
        other = session.scalar(select(Customer.user_id).where(Customer.user_id.not_like(f"{USER_PREFIX}%")).limit(1))
    if other is not None:
        raise RuleViolation(
            f"this database holds customers that are not bench data (e.g. {other!r}); bench-data writes about a "
            "million rows and refuses to mix them into real data. Use an empty database, or --force."
        )


def _add_plans() -> None:
    with unit_of_work() as session:
        existing = set(session.scalars(select(Plan.code)))
        for spec in load_catalog(current_app.config["PLANS_CATALOG"]):
            if spec["code"] not in existing:
                session.add(Plan(**spec, created_at=EPOCH, updated_at=EPOCH))


def _run_chunk(report: BenchReport, key_column, key_of, writer, seed: int, chunk: range) -> None:
    """Write the rows of `chunk` missing from the database (none when its last row is there) in one transaction.

    The chunk's random stream depends on the seed and the chunk's start only, so the rows already present (a
    smaller earlier run) are drawn again, identically, and left out.
    """
    with unit_of_work() as session:
        if session.scalar(select(key_column).where(key_column == key_of(chunk[-1]))) is not None:
            report.chunks_skipped += 1
            return
        present = set(session.scalars(select(key_column).where(key_column.in_([key_of(i) for i in chunk]))))
        writer(session, report, random.Random(f"{seed}:{writer.__name__}:{chunk.start}"), chunk, present)


# -- users ------------------------------------------------------------------------------------------------------


def _write_users(session: Session, report: BenchReport, rng: random.Random, chunk: range, present: set[str]) -> None:
    customers, subscriptions, graces, drafts = [], [], [], []
    for index in chunk:
        user, since = user_id(index), EPOCH - timedelta(days=rng.randrange(1, 700))
        plan, status = _pick(rng, PLAN_MIX), _pick(rng, STATUS_MIX)
        valid_until = EPOCH + timedelta(days=rng.randrange(-60, 400))
        credits = rng.randrange(0, 20_000) if status in ("active", "trialing") else 0
        if user in present:
            continue
        customers.append(
            {"user_id": user, "provider_customer_id": f"cus_bench{index:07d}", "email": f"{user}@example.com"}
            | {"created_at": since, "updated_at": since}
        )
        subscriptions.append(
            {"user_id": user, "plan": plan, "status": status, "credits": credits, "valid_until": valid_until}
            | {"provider_subscription_id": f"sub_bench{index:07d}", "version": 1, "last_event_created_at": None}
            | {"created_at": since, "updated_at": since}
        )
        if status == "past_due":
            graces.append(
                {"user_id": user, "starts_at": EPOCH, "ends_at": EPOCH + timedelta(days=7), "status": "active"}
                | {"reset_count": 0, "reason": "card declined", "created_at": EPOCH, "updated_at": EPOCH}
            )
        state = {"plan": plan, "status": status, "credits": credits, "valid_until": valid_until.isoformat()}
        drafts.append(_draft(since, "bench-data", "cli", "subscription.update", user, None, state, "bench data"))
    bulk_insert(session, Customer.__table__, customers)
    bulk_insert(session, Subscription.__table__, subscriptions)
    bulk_insert(session, GracePeriod.__table__, graces)
    bulk_insert(session, AuditEntry.__table__, audit.seal_batch(session, drafts))
    report.customers += len(customers)
    report.audit_rows += len(drafts)


def _draft(at: datetime, actor: str, channel: str, action: str, user: str | None, before, after, reason=None):
    context = {"channel": channel, "request_id": None, "ip": None, "user_agent": None}
    return {"created_at": at, "actor": actor, "action": action, "user_id": user, "reason": reason} | {
        "before": before,
        "after": after,
        "context": context,
    }


# -- events -----------------------------------------------------------------------------------------------------


def _agree_with_events(chunk: range) -> int:
    """Set the subscriptions of `chunk` to what their events imply (reconcile's fixes), but one in MISMATCH_EVERY.

    Idempotent: once they agree there is nothing to fix; new events make the next run fix again. How many changed.
    """
    users = [user_id(index) for index in chunk if index % MISMATCH_EVERY != MISMATCH_EVERY - 1]
    with unit_of_work() as session:
        fixes = reconcile.event_fixes(session, users)
        by_fields: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for user, fields in fixes.items():
            by_fields.setdefault(tuple(sorted(fields)), []).append(
                {"fix_user_id": user} | {f"fix_{name}": value for name, value in fields.items()}
            )
        table = Subscription.__table__
        for names, rows in by_fields.items():
            stmt = update(table).where(table.c.user_id == bindparam("fix_user_id"))
            session.execute(stmt.values({name: bindparam(f"fix_{name}") for name in names}), rows)
    return len(fixes)


def _templates() -> dict[str, str]:
    """Per event type, the compact JSON envelope with `@@name@@` placeholders for the values that vary."""
    shape = {name: json.loads((SHAPES / f"{name}.json").read_text()) for name in ("event", "subscription", "invoice")}
    shape["price"] = json.loads((SHAPES / "price.json").read_text())
    sub = shape["subscription"] | {"id": "@@sub@@", "customer": "@@cus@@", "status": "@@status@@"}
    sub["metadata"] = {"user_id": "@@user@@"}
    item = sub["items"]["data"][0]
    item["price"]["id"], item["current_period_end"] = "@@price@@", "@@period_end@@"
    invoice = shape["invoice"] | {"id": "@@obj@@", "customer": "@@cus@@"}
    # It bills the user's own subscription: an invoice of another one is ignored when the worker or a replay runs it.
    invoice["parent"]["subscription_details"]["subscription"] = "@@sub@@"
    objects = {
        "customer.subscription": sub,
        "invoice": invoice,
        "price": shape["price"] | {"id": "@@price@@"},
        "product": {"id": "@@obj@@", "object": "product", "active": True, "name": "Bench product"},
    }
    templates = {}
    for event_type in EVENT_MIX:
        envelope = shape["event"] | {"id": "@@evt@@", "type": event_type, "created": "@@created@@"}
        envelope["data"] = {"object": objects[event_type.rpartition(".")[0]]}
        text = json.dumps(envelope, separators=(",", ":"))
        templates[event_type] = text.replace('"@@created@@"', "@@created@@").replace(
            '"@@period_end@@"', "@@period_end@@"
        )
    return templates


def _fill(template: str, values: dict[str, str]) -> str:
    for name in ENVELOPE_FIELDS:
        template = template.replace(f"@@{name}@@", values.get(name, ""))
    return template


def _event_writer(templates: dict[str, str], subscriptions: int):
    prices = {spec["code"]: spec["provider_price_id"] for spec in load_catalog(current_app.config["PLANS_CATALOG"])}

    def write_events(session: Session, report: BenchReport, rng: random.Random, chunk: range, present: set[str]):
        events, drafts = [], []
        for index in chunk:
            hot = min(HOT_USERS, subscriptions)
            user = rng.randrange(hot) if rng.random() < 0.05 else rng.randrange(subscriptions)
            event_type, outcome = _pick(rng, EVENT_MIX), _pick(rng, OUTCOME_MIX)
            row = _event_row(templates, prices, rng, index, user, event_type, outcome)
            row_drafts = []
            if outcome == "processed" and row["user_id"] and rng.random() < 0.2:
                row_drafts.append(_webhook_draft(row, rng))
            if rng.random() < 0.005:
                row_drafts.append(_support_draft(row["received_at"], user_id(user), rng))
            if row["event_id"] not in present:
                events.append(row)
                drafts += row_drafts
        bulk_insert(session, BillingEvent.__table__, events)
        keys = [row["event_id"] for row in events]
        stored = select(BillingEvent.event_id, BillingEvent.id).where(BillingEvent.event_id.in_(keys))
        pks = dict(session.execute(stored).tuples().all())
        bulk_insert(session, EventAttempt.__table__, [_attempt_row(row, pks[row["event_id"]]) for row in events])
        _keep_evidence(session, events, pks)
        bulk_insert(session, AuditEntry.__table__, audit.seal_batch(session, drafts))
        report.events += len(events)
        report.audit_rows += len(drafts)

    return write_events


def _event_row(templates, prices, rng: random.Random, index: int, user: int, event_type: str, outcome: str):
    created = EPOCH + index * EVENT_SPACING + timedelta(seconds=rng.randrange(30))
    received = created + timedelta(milliseconds=rng.randrange(200, 5000))
    catalog = event_type.startswith(("price.", "product."))
    plan = _pick(rng, PLAN_MIX)
    values = {
        "evt": event_id(index),
        "created": str(int(created.timestamp())),
        "cus": f"cus_bench{user:07d}",
        "sub": f"sub_bench{user:07d}",
        "user": user_id(user),
        "price": prices[plan],
        "period_end": str(int((created + timedelta(days=30)).timestamp())),
        "status": "canceled" if event_type.endswith("deleted") else "active",
        "obj": f"in_bench{index:09d}" if event_type.startswith("invoice") else f"prod_bench{index % 7}",
    }
    failed = outcome in ("failed", "dead")
    attempts = 10 if outcome == "dead" else rng.randrange(1, 5) if failed else 1
    return {
        "event_id": values["evt"],
        "type": event_type,
        "user_id": None if catalog else values["user"],
        "payload": _fill(templates[event_type], values),
        "status": outcome,
        "attempts": attempts,
        "last_error": f"No customer is known for {values['cus']}" if failed else None,
        "next_retry_at": RETRY_PARKED if outcome == "failed" else None,
        "created_at": created,
        "received_at": received,
        "processed_at": None if failed else received + timedelta(milliseconds=rng.randrange(2, 40)),
        "updated_at": received,
    }


def _keep_evidence(session: Session, events: list[dict[str, Any]], pks: dict[str, int]) -> None:
    """Keep what the processed subscription and invoice events set on their customers, as the handler keeps it."""
    applied = [
        row for row in events if row["status"] == "processed" and row["type"] in handlers.SUBSCRIPTION_EVENT_TYPES
    ]
    customers = Customer.__table__
    users = {row["user_id"] for row in applied}
    stmt = select(customers.c.user_id, customers.c.evidence).where(customers.c.user_id.in_(users))
    kept = dict(session.execute(stmt).tuples().all())
    for row in applied:
        event = evidence.Applied(row["processed_at"], pks[row["event_id"]], row["type"], row["event_id"])
        implied = handlers.implied_by(row["type"], json.loads(row["payload"]))
        kept[row["user_id"]] = evidence.merged(kept[row["user_id"]], implied, event)
    store = update(customers).where(customers.c.user_id == bindparam("who")).values(evidence=bindparam("kept"))
    if kept:
        session.execute(store, [{"who": user, "kept": document} for user, document in kept.items()])


def _attempt_row(event: dict[str, Any], pk: int) -> dict[str, Any]:
    """The event's last attempt (earlier ones of a retried event are not generated)."""
    note = event["last_error"] or ("stale: a newer event was applied" if event["status"] == "ignored" else None)
    at = event["processed_at"] or event["received_at"]
    return {"event_pk": pk, "at": at, "trigger": "receive" if event["attempts"] == 1 else "retry"} | {
        "outcome": event["status"],
        "error": note,
        "duration_ms": 3,
    }


def _webhook_draft(event: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    status = "canceled" if event["type"].endswith("deleted") else "active"
    before, after = {"status": "past_due" if rng.random() < 0.3 else status}, {"status": status}
    actor = f"webhook:{event['event_id']}"
    return _draft(event["processed_at"], actor, "api", "subscription.update", event["user_id"], before, after)


def _support_draft(at: datetime, user: str, rng: random.Random) -> dict[str, Any]:
    agent = f"support-agent-{rng.randrange(12)}"
    if rng.random() < 0.8:
        credits = rng.randrange(0, 5000)
        before, after = {"credits": credits}, {"credits": credits + 500}
        return _draft(at, agent, "console", "entitlements.override", user, before, after, "goodwill credits")
    before, after = {"ends_at": at.isoformat()}, {"ends_at": (at + timedelta(days=7)).isoformat()}
    return _draft(at, agent, "console", "grace.reset", user, before, after, "customer asked for more time")


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(tuple(weights), tuple(weights.values()))[0]


# -- bulk writes ------------------------------------------------------------------------------------------------


def bulk_insert(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` (dicts of column values; JSON columns may hold JSON text) in one bulk statement.

    PostgreSQL: COPY ... FROM STDIN through the session's connection. Elsewhere: one multi-row INSERT.
    """
    if not rows:
        return
    columns = list(rows[0])
    json_columns = {name for name in columns if isinstance(table.c[name].type, JSON)}
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(table), [_with_json_values(row, json_columns) for row in rows])
        return
    cursor = session.connection().connection.driver_connection.cursor()
    with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in _copy_rows(rows, columns, json_columns):
            copy.write_row(row)


def _copy_rows(rows, columns: list[str], json_columns: set[str]) -> Iterator[tuple[Any, ...]]:
    for row in rows:
        yield tuple(_json_text(row[name]) if name in json_columns else row[name] for name in columns)


def _json_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _with_json_values(row: dict[str, Any], json_columns: set[str]) -> dict[str, Any]:
    return {
        name: json.loads(value) if name in json_columns and isinstance(value, str) else value
        for name, value in row.items()
    }
