"""Reconcile: compare each customer's stored subscription with what the evidence implies, and fix it on request.

The evidence is one of two sources:
- `events` (default): the customer's processed subscription and invoice events, read with the webhook handlers'
  own `implied_by` and `merge_state` (ignored events, stale ones included, never count), folded in the order they
  were applied together with the audited manual changes (overrides, earlier reconcile fixes, seeded rows), so an
  override made after the last event is not undone. A subscription with no evidence at all is of unknown state,
  which defaults to `unpaid`.
- `provider` (PLANS_PROVIDER=stripe): the customer's subscriptions at Stripe, read through the SDK, throttled.

Each mismatch carries the fix it would apply as a value (`fix`: the fields and their new values, or None when
there is no automatic fix), so the same code previews (GET) and applies (POST): applying recomputes every fix
under the subscription's lock and applies what is true then, never a stale preview.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import stripe
from sqlalchemy import Row, Select, and_, any_, bindparam, select, true
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from app.extensions import db
from app.models.audit import MANUAL_SUBSCRIPTION_CHANGE, AuditEntry
from app.models.customers import Customer
from app.models.plans import Plan
from app.models.subscriptions import Subscription, SubscriptionStatus
from app.services import audit, evidence, handlers
from app.services.actor import Actor
from app.services.errors import InvalidInput, NotFound, ProviderUnavailable
from app.services.handlers import SubscriptionState
from app.services.permissions import Permission, require
from app.services.plans import stripe_client
from app.services.subscriptions import lock_customer, lock_subscription
from app.services.uow import unit_of_work

# Customers read (with their evidence) per query: memory stays bounded at any table size, and a page that fills up
# early has read the evidence of at most this many customers it does not report on.
BATCH_SIZE = 500
# Customers one page examines at most, so a page costs the same however sparse the mismatches are.
SCAN_BUDGET = {"events": 5000, "provider": 100}  # the provider costs an HTTP request per customer
MAX_APPLY_USER_IDS = 1000
STRIPE_REQUESTS_PER_SECOND = 25  # Stripe allows 100 read requests/s in live mode, 25 in test mode
COMPARED = ("status", "plan", "valid_until")
UNKNOWN = SubscriptionState(
    plan=None, status=SubscriptionStatus.UNPAID, valid_until=None, provider_subscription_id=None
)
_ENDED = (SubscriptionStatus.CANCELED,)


class Kind(enum.StrEnum):
    STATUS = "status"
    PLAN = "plan"
    VALID_UNTIL = "valid_until"
    MISSING_SUBSCRIPTION = "missing_subscription"
    PROVIDER_SUBSCRIPTION_DIFFERS = "provider_subscription_differs"


class Source(enum.StrEnum):
    EVENTS = "events"
    PROVIDER = "provider"


@dataclass(frozen=True)
class Mismatch:
    """One difference between a stored subscription and its evidence, with the fix that would remove it.

    `fix` maps subscription fields to the values apply sets (None: no automatic fix, a person must decide).
    """

    user_id: str
    kind: Kind
    expected: Any
    actual: Any
    fix: dict[str, Any] | None
    why: str  # the evidence: an event, an audit entry, or the provider's subscription


@dataclass(frozen=True)
class ReconcilePage:
    checked: int  # customers examined for this page
    mismatches: list[Mismatch]
    next_cursor: tuple[str, int] | None  # (user id to resume at, its mismatches already returned)


@dataclass(frozen=True)
class ApplyReport:
    checked: int
    mismatches: list[Mismatch]  # what was found under the locks, fixed or not
    fixed: int


@dataclass(frozen=True)
class Evidence:
    """What a source says one customer's subscription should hold."""

    state: SubscriptionState | None  # None: the source says nothing, so nothing is compared
    why: Mapping[str, str]  # per field, what set it
    differs: Mismatch | None = None  # the provider holds another live subscription: reported, never fixed


@dataclass(frozen=True)
class Stored:
    """A customer as one reconcile row reads them (plain values: nothing accumulates in the session)."""

    user_id: str
    provider_customer_id: str | None
    state: SubscriptionState | None  # None: no subscription row
    evidence: dict[str, Any] | None  # what its applied events set (`app/services/evidence.py`)

    @classmethod
    def of(cls, row: Row) -> Stored:
        state = None
        if row.subscription_id is not None:
            state = SubscriptionState(row.plan, row.status, row.valid_until, row.provider_subscription_id)
        return cls(row.user_id, row.provider_customer_id, state, row.evidence)


# -- comparing ----------------------------------------------------------------------------------------------------


def compare(stored: Stored, evidence: Evidence) -> list[Mismatch]:
    """The mismatches between a customer's stored subscription and the evidence, each with its fix."""
    user_id = stored.user_id
    if evidence.differs is not None:
        return [evidence.differs]
    expected = evidence.state
    if expected is None:
        return []
    if stored.state is None:
        fields = _fields(expected)
        why = "; ".join(f"{name} from {evidence.why[name]}" for name in fields if name in evidence.why)
        return [Mismatch(user_id, Kind.MISSING_SUBSCRIPTION, fields, None, fields, why)]
    found = []
    for name in COMPARED:
        want, have = getattr(expected, name), getattr(stored.state, name)
        if want is not None and want != have:
            why = evidence.why.get(name, "no evidence: unknown state defaults to unpaid")
            found.append(Mismatch(user_id, Kind(name), want, have, {name: want}, why))
    return found


def _fields(state: SubscriptionState) -> dict[str, Any]:
    values = {name: getattr(state, name) for name in (*COMPARED, "provider_subscription_id")}
    return {name: value for name, value in values.items() if value is not None}


def _plan_codes(session: Session) -> dict[str, str]:
    """Plan codes by provider price id (a catalog is a handful of plans)."""
    return {price: code for price, code in session.execute(select(Plan.provider_price_id, Plan.code)) if price}


# -- evidence from events -----------------------------------------------------------------------------------------


class _Step(NamedTuple):
    """One thing that set fields of a subscription; steps were applied in the order of (at, rank, seq)."""

    at: datetime
    rank: int  # at the same instant, manual changes (0) came before events (1): seed data, then its events
    seq: int
    fields: dict[str, Any]
    why: str
    action: str  # the audit action of a manual change, or the event's type


Latest = dict[str, _Step]  # per field, the step applied last of those that set it


class EventsSource:
    """What the customer's processed events and audited manual changes imply."""

    name = Source.EVENTS

    def __init__(self, session: Session) -> None:
        self.session = session
        self.plans = _plan_codes(session)

    def evidence(self, customers: Sequence[Stored]) -> dict[str, Evidence]:
        return {user_id: _evidence(latest) for user_id, latest in self.latest(customers).items()}

    def latest(self, customers: Sequence[Stored]) -> dict[str, Latest]:
        """Per customer, per field, the event or manual change applied last of those that set it.

        Applying every step in order leaves each field as the last step that set it left it, so this is what
        folding them would give. The events' part was kept that way as they were applied (`evidence`).
        """
        latest: dict[str, Latest] = {customer.user_id: self._event_steps(customer) for customer in customers}
        for user_id, step in self._manual_steps(list(latest)):
            _keep_if_later(latest[user_id], step)
        return latest

    def _event_steps(self, customer: Stored) -> Latest:
        """Per field, the applied event that set it last, from the customer's evidence (never the payloads)."""
        latest: Latest = {}
        for kept in evidence.fields(customer.evidence):
            event = kept.event
            step = _Step(
                event.at,
                1,
                event.pk,
                self._fields(kept.field, kept.value),
                f"{event.type} {event.event_id}",
                event.type,
            )
            for name in step.fields:
                latest[name] = step
        return latest

    def _fields(self, name: str, value: Any) -> dict[str, Any]:
        """What an event's kept value sets: its price sets the plan of that price in today's catalog, if any."""
        if name != "price_id":
            return {name: value}
        return {"plan": self.plans[value]} if value in self.plans else {}

    def _manual_steps(self, user_ids: Sequence[str]) -> Iterator[tuple[str, _Step]]:
        stmt = select(
            AuditEntry.id, AuditEntry.created_at, AuditEntry.actor, AuditEntry.action, AuditEntry.user_id
        ).add_columns(AuditEntry.before, AuditEntry.after)
        stmt = stmt.where(_among(self.session, AuditEntry.user_id, user_ids), MANUAL_SUBSCRIPTION_CHANGE)
        for entry in self.session.execute(stmt):
            fields = _changed_fields(entry.before, entry.after)
            why = f"{entry.action} by {entry.actor} (audit entry {entry.id})"
            yield entry.user_id, _Step(entry.created_at, 0, entry.id, fields, why, entry.action)


def _among(session: Session, column, values: Sequence[str]):
    """`column IN values`; on PostgreSQL `= ANY` one array, so the statement does not grow with the batch (psycopg
    parses a statement of more than 50 parameters anew each time, and SQLAlchemy expands each parameter)."""
    if session.get_bind().dialect.name != "postgresql":
        return column.in_(values)
    return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))


def _changed_fields(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """The compared fields an audited change set (all of them when it created the subscription), typed again."""
    if not isinstance(after, dict):
        return {}
    names = [*COMPARED, "provider_subscription_id"]
    changed = [name for name in names if name in after and (before is None or before.get(name) != after[name])]
    return {name: _typed(name, after[name]) for name in changed}


def _typed(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "status":
        return SubscriptionStatus(value)
    if name == "valid_until":
        return datetime.fromisoformat(value)
    return value


def _keep_if_later(latest: Latest, step: _Step) -> None:
    for name in step.fields:
        known = latest.get(name)
        if known is None or step[:3] > known[:3]:
            latest[name] = step


def _evidence(latest: Latest) -> Evidence:
    """The state the steps leave, and what set each field; unknown (unpaid) where none set it."""
    values = {name: step.fields[name] for name, step in latest.items()}
    return Evidence(replace(UNKNOWN, **values), {name: step.why for name, step in latest.items()})


def _overridden(latest: Latest) -> set[str]:
    """The fields an entitlement override set last (no event or other change since): support's deliberate choice."""
    return {name for name, step in latest.items() if step.action == "entitlements.override"}


# -- evidence from the provider -----------------------------------------------------------------------------------


class RateLimiter:
    """At most `rate` acquisitions per second, evenly spaced; `clock` and `sleep` are injectable for tests."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval, self.clock, self.sleep = 1 / rate, clock, sleep
        self.next_at: float | None = None

    def acquire(self) -> None:
        """Wait, if need be, until the next request is allowed."""
        now = self.clock()
        if self.next_at is not None and now < self.next_at:
            self.sleep(self.next_at - now)
            now = self.next_at
        self.next_at = now + self.interval


class SubscriptionProvider(Protocol):
    """Where the provider's subscriptions come from: every one of a customer's, any status."""

    def subscriptions_of(self, provider_customer_id: str) -> list[dict[str, Any]]: ...


class StripeSubscriptions:
    """A customer's subscriptions at Stripe (`status=all`, every page), each request through the rate limiter."""

    PAGE_SIZE = 100

    def __init__(
        self,
        api_key: str | None,
        api_base: str | None = None,
        *,
        limiter: RateLimiter | None = None,
        max_network_retries: int = 2,
    ) -> None:
        self.api_key, self.api_base, self.max_network_retries = api_key, api_base, max_network_retries
        self.limiter = limiter or RateLimiter(STRIPE_REQUESTS_PER_SECOND)

    def subscriptions_of(self, provider_customer_id: str) -> list[dict[str, Any]]:
        if not self.api_key:
            raise ProviderUnavailable("PLANS_PROVIDER is stripe but STRIPE_API_KEY is not set.")
        client = stripe_client(self.api_key, self.api_base, max_network_retries=self.max_network_retries)
        params: dict[str, Any] = {"customer": provider_customer_id, "status": "all", "limit": self.PAGE_SIZE}
        found: list[dict[str, Any]] = []
        try:
            while True:
                self.limiter.acquire()
                page = client.v1.subscriptions.list(params=params)
                found += [subscription.to_dict() for subscription in page.data]
                if not page.has_more or not page.data:
                    return found
                params = {**params, "starting_after": page.data[-1].id}
        except stripe.StripeError as exc:
            raise ProviderUnavailable(f"Stripe could not be read: {exc.user_message or type(exc).__name__}") from None


def configured_provider(config: Mapping[str, Any]) -> SubscriptionProvider | None:
    """Stripe's subscriptions when PLANS_PROVIDER is stripe; otherwise None (only the events can be compared)."""
    if config["PLANS_PROVIDER"] != "stripe":
        return None
    return StripeSubscriptions(config["STRIPE_API_KEY"], config["STRIPE_API_BASE"])


class ProviderSource:
    """What the provider's subscriptions of each customer imply (read with the webhook handlers' reader)."""

    name = Source.PROVIDER

    def __init__(self, session: Session, provider: SubscriptionProvider) -> None:
        self.provider = provider
        self.plans = _plan_codes(session)
        self.history = EventsSource(session)

    def evidence(self, customers: Sequence[Stored]) -> dict[str, Evidence]:
        """The provider's word on each customer, except for fields an override set since the last event."""
        history = self.history.latest(customers)
        return {
            customer.user_id: _leaving(self._evidence(customer), _overridden(history[customer.user_id]))
            for customer in customers
        }

    def _evidence(self, customer: Stored) -> Evidence:
        if customer.provider_customer_id is None:
            return Evidence(None, {})  # not a provider customer: nothing to compare
        found = self.provider.subscriptions_of(customer.provider_customer_id)
        stored_id = customer.state.provider_subscription_id if customer.state else None
        states = {sub["id"]: self._state(sub) for sub in found if isinstance(sub.get("id"), str)}
        live = sorted(sub_id for sub_id, state in states.items() if state.status not in _ENDED)
        others = [sub_id for sub_id in live if sub_id != stored_id]
        if others and (customer.state is not None or len(live) > 1):
            differs = Mismatch(
                customer.user_id,
                Kind.PROVIDER_SUBSCRIPTION_DIFFERS,
                others,
                stored_id,
                None,
                f"the provider has live subscription {', '.join(others)} for {customer.provider_customer_id}; "
                "no automatic fix: decide which subscription is right",
            )
            return Evidence(None, {}, differs)
        if customer.state is None:
            return self._at_provider(states[live[0]]) if live else Evidence(None, {})
        if stored_id is None:
            return Evidence(None, {})  # a subscription support granted, not one the provider manages
        if stored_id not in states:
            why = f"the provider has no subscription {stored_id}: unknown state defaults to unpaid"
            return Evidence(UNKNOWN, {"status": why})
        return self._at_provider(states[stored_id])

    def _state(self, subscription: dict[str, Any]) -> SubscriptionState:
        implied = handlers.implied_by(
            "customer.subscription.updated", {"created": subscription.get("created"), "data": {"object": subscription}}
        )
        return handlers.merge_state(None, implied, self.plans.get(implied.price_id))

    @staticmethod
    def _at_provider(state: SubscriptionState) -> Evidence:
        why = f"the provider's subscription {state.provider_subscription_id}"
        return Evidence(state, dict.fromkeys((*COMPARED, "provider_subscription_id"), why))


def _leaving(evidence: Evidence, fields: set[str]) -> Evidence:
    """`evidence` with no expectation for `fields` (so they are neither compared nor fixed)."""
    if evidence.state is None or not fields:
        return evidence
    return replace(evidence, state=replace(evidence.state, **dict.fromkeys(fields)))


def source_for(source: Source, provider: SubscriptionProvider | None, session: Session):
    """The evidence source `source` names; InvalidInput when it is the provider and none is configured."""
    if source is Source.EVENTS:
        return EventsSource(session)
    if provider is None:
        raise InvalidInput("source", "source=provider needs PLANS_PROVIDER=stripe; this server reads the events only")
    return ProviderSource(session, provider)


# -- reading customers in keyset batches --------------------------------------------------------------------------


def _customers(session: Session, *, start: str | None, only: Sequence[str] | None) -> Iterator[Stored]:
    """Customers by user id from `start` (inclusive) with their subscriptions, `BATCH_SIZE` per query."""
    after = None
    while True:
        rows = [Stored.of(row) for row in session.execute(_customer_batch(start, after, only))]
        yield from rows
        if len(rows) < BATCH_SIZE:
            return
        after = rows[-1].user_id


def _customer_batch(start: str | None, after: str | None, only: Sequence[str] | None) -> Select:
    """The next batch: user ids above `after`, else from `start`. The bound is on both tables, so PostgreSQL starts
    the subscriptions' index scan of its merge join there too (bounding only the customers, it read every
    subscription up to there: 71 ms a batch half way through 100,000 customers)."""

    def bounded(user_id):
        if after is not None:
            return user_id > after
        return true() if start is None else user_id >= start

    stmt = (
        select(
            Customer.user_id,
            Customer.provider_customer_id,
            Customer.evidence,
            Subscription.id.label("subscription_id"),
            Subscription.plan,
            Subscription.status,
            Subscription.valid_until,
            Subscription.provider_subscription_id,
        )
        .outerjoin(Subscription, and_(Subscription.user_id == Customer.user_id, bounded(Subscription.user_id)))
        .where(bounded(Customer.user_id))
        .order_by(Customer.user_id)
        .limit(BATCH_SIZE)
    )
    return stmt if only is None else stmt.where(Customer.user_id.in_(only))


def _compared(source, customers: Iterator[Stored], kind: Kind | None) -> Iterator[tuple[Stored, list[Mismatch]]]:
    """Each customer with its mismatches (of `kind`, if given), the evidence read a batch at a time."""
    batch: list[Stored] = []
    for customer in customers:
        batch.append(customer)
        if len(batch) == BATCH_SIZE:
            yield from _compare_batch(source, batch, kind)
            batch = []
    yield from _compare_batch(source, batch, kind)


def _compare_batch(source, batch: list[Stored], kind: Kind | None) -> Iterator[tuple[Stored, list[Mismatch]]]:
    if not batch:
        return
    evidence = source.evidence(batch)
    for customer in batch:
        found = compare(customer, evidence[customer.user_id])
        yield customer, [mismatch for mismatch in found if kind is None or mismatch.kind is kind]


# -- the operations -----------------------------------------------------------------------------------------------


def event_fixes(session: Session, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per customer of `user_ids` whose subscription disagrees with its events, the fields the fixes would set.

    Reads only (no permission, no audit): for tools that prepare data, such as `billing bench-data`.
    """
    fixes: dict[str, dict[str, Any]] = {}
    for customer, mismatches in _compared(EventsSource(session), _customers(session, start=None, only=user_ids), None):
        for mismatch in mismatches:
            fixes.setdefault(customer.user_id, {}).update(mismatch.fix or {})
    return fixes


def find_mismatches(
    *,
    actor: Actor,
    source: Source = Source.EVENTS,
    provider: SubscriptionProvider | None = None,
    user_id: str | None = None,
    kind: Kind | None = None,
    after: tuple[str, int] | None = None,
    limit: int = 50,
) -> ReconcilePage:
    """One page of mismatches (at most `limit`), by user id, resuming at the cursor `after`; writes nothing.

    A page examines at most SCAN_BUDGET customers; `next_cursor` is None only once every customer was examined.
    """
    require(actor, Permission.READ)
    session = db.session
    evidence_source = source_for(source, provider, session)
    start, skip = after or (None, 0)
    customers = _customers(session, start=start, only=None if user_id is None else [user_id])
    checked, found = 0, []
    for customer, mismatches in _compared(evidence_source, customers, kind):
        offset = skip if customer.user_id == start else 0
        pending = mismatches[offset:]
        room = limit - len(found)
        if checked == SCAN_BUDGET[source] or (pending and room == 0):
            return ReconcilePage(checked, found, (customer.user_id, offset))
        checked += 1
        found += pending[:room]
        if len(pending) > room:
            return ReconcilePage(checked, found, (customer.user_id, offset + room))
    return ReconcilePage(checked, found, None)


def apply_fixes(
    *,
    actor: Actor,
    now: datetime,
    source: Source = Source.EVENTS,
    provider: SubscriptionProvider | None = None,
    user_ids: Sequence[str] | None = None,
    reason: str | None = None,
) -> ApplyReport:
    """Fix every mismatch that has a fix (of the users named, or all), one user per transaction.

    Each user's subscription is locked and compared again before anything is written, and each fix is audited
    (`reconcile.apply`, before and after; its reason is `reason`, if given, then the mismatch).
    Unknown user ids: NotFound, nothing fixed.
    """
    require(actor, Permission.APPLY_RECONCILE)
    only = _known(user_ids) if user_ids is not None else None
    checked, found, fixed = 0, [], 0
    customers = _customers(db.session, start=None, only=only)
    for customer, mismatches in _compared(source_for(source, provider, db.session), customers, None):
        checked += 1
        if any(mismatch.fix is not None for mismatch in mismatches):
            mismatches = _apply_user(customer.user_id, source, provider, reason, actor=actor, now=now)
            fixed += sum(mismatch.fix is not None for mismatch in mismatches)
        found += mismatches
    return ApplyReport(checked, found, fixed)


def _known(user_ids: Sequence[str]) -> list[str]:
    wanted = list(dict.fromkeys(user_ids))
    if not 1 <= len(wanted) <= MAX_APPLY_USER_IDS:
        raise InvalidInput("user_ids", f"list between 1 and {MAX_APPLY_USER_IDS} user ids")
    known = set(db.session.scalars(select(Customer.user_id).where(Customer.user_id.in_(wanted))))
    missing = [user_id for user_id in wanted if user_id not in known]
    if missing:
        raise NotFound(f"No customer has the user id {', '.join(map(repr, missing[:10]))}; nothing was fixed.")
    return wanted


def _apply_user(
    user_id: str,
    source: Source,
    provider: SubscriptionProvider | None,
    reason: str | None,
    *,
    actor: Actor,
    now: datetime,
) -> list[Mismatch]:
    """Lock the user's subscription, compare again, and apply and audit each fix; the mismatches found then."""
    with unit_of_work() as session:
        lock_customer(session, user_id)
        subscription = lock_subscription(session, user_id)
        [customer] = list(_customers(session, start=None, only=[user_id]))
        mismatches = compare(customer, source_for(source, provider, session).evidence([customer])[user_id])
        for mismatch in mismatches:
            if mismatch.fix is not None:
                subscription = _apply_fix(session, subscription, mismatch, reason, actor=actor, now=now)
    return mismatches


def _apply_fix(
    session: Session,
    subscription: Subscription | None,
    mismatch: Mismatch,
    reason: str | None,
    *,
    actor: Actor,
    now: datetime,
) -> Subscription:
    before = _snapshot(subscription) if subscription else None
    if subscription is None:
        subscription = Subscription(user_id=mismatch.user_id, credits=0, created_at=now)
        session.add(subscription)
    for name, value in mismatch.fix.items():
        setattr(subscription, name, value)
    subscription.updated_at = now
    session.flush()
    found = f"{mismatch.kind}: expected {_text(mismatch.expected)}, found {_text(mismatch.actual)} ({mismatch.why})"
    after = _snapshot(subscription)
    audit.record(
        session, actor, "reconcile.apply", mismatch.user_id, before, after, now=now, reason=audit.because(reason, found)
    )
    return subscription


def _snapshot(subscription: Subscription) -> dict[str, Any]:
    return {name: getattr(subscription, name) for name in (*COMPARED, "provider_subscription_id")}


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{name}: {_text(item)}" for name, item in value.items()) + "}"
    if isinstance(value, datetime):
        return value.isoformat()
    return "nothing" if value is None else str(value)
