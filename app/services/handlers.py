"""Webhook handlers: one dispatch table, one small function per kind of event.

A subscription or invoice event is handled in four steps, so preview, reconcile and as-of views can reuse them:
`implied_by` reads the payload alone into a plain value (what the event says), `lock_target` finds and locks the
user (customer, then subscription: the lock order of every write to a user), `plan_change` compares the two (before,
after, why, or why it is ignored), and `apply_change` writes and audits the change.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from app.models.customers import Customer
from app.models.events import BillingEvent, EventStatus
from app.models.plans import Plan
from app.models.subscriptions import Subscription, SubscriptionStatus
from app.services import audit, evidence, grace
from app.services.actor import Actor
from app.services.errors import HandlerError
from app.services.plans import mark_catalog_stale
from app.services.subscriptions import lock_subscription

# Stripe's statuses beyond ours: an expired first payment ends the subscription; anything else we do not model
# (incomplete, paused, ...) is treated as unpaid, the state that grants nothing.
_STATUS_ALIASES = {"incomplete_expired": SubscriptionStatus.CANCELED}
_CATALOG_PREFIXES = ("price.", "product.", "plan.")
_LATEST_SECONDS = 253402300799  # 9999-12-31T23:59:59Z
MAX_USER_ID = 64  # the length of the user_id columns


class GraceAction(enum.StrEnum):
    START = "start"
    RESOLVE = "resolve"


@dataclass(frozen=True)
class HandlerContext:
    """What a handler needs besides the event: who acts, when, and the grace period length."""

    actor: Actor
    now: datetime
    grace_days: int


@dataclass(frozen=True)
class Outcome:
    status: EventStatus  # processed or ignored (a failure is raised as HandlerError)
    note: str | None = None  # why it was ignored
    user_id: str | None = None


@dataclass(frozen=True)
class Implied:
    """What one event says about a subscription, read from its payload alone."""

    event_type: str
    created: datetime  # the provider's `created` of the event
    provider_customer_id: str | None
    user_id: str | None  # metadata.user_id, when the payload carries it
    provider_subscription_id: str | None
    status: SubscriptionStatus
    price_id: str | None  # the item's price id, or its plan id in older payloads
    valid_until: datetime | None  # period end: on the subscription, or on its items in newer API versions
    grace: GraceAction | None = None
    billed_subscription_id: str | None = None  # the subscription an invoice bills (None: a one-off invoice)

    @property
    def about_subscription_id(self) -> str | None:
        """The provider subscription the event is about: the one an invoice bills, or the subscription itself."""
        return self.billed_subscription_id if self.event_type in _INVOICE_TYPES else self.provider_subscription_id


@dataclass(frozen=True)
class SubscriptionState:
    """The fields of a subscription that provider events set."""

    plan: str | None
    status: SubscriptionStatus
    valid_until: datetime | None
    provider_subscription_id: str | None

    @classmethod
    def of(cls, subscription: Subscription) -> SubscriptionState:
        return cls(
            subscription.plan, subscription.status, subscription.valid_until, subscription.provider_subscription_id
        )


@dataclass(frozen=True)
class Change:
    """The effect of one event on one user's subscription, computed before anything is written."""

    user_id: str
    before: SubscriptionState | None
    after: SubscriptionState
    why: str
    created: datetime
    ignored: str | None = None  # why nothing is written (a newer event was applied already, ...)
    grace: GraceAction | None = None
    link_customer: str | None = None  # a provider customer id to link to `user_id`

    @property
    def changes_subscription(self) -> bool:
        return self.before != self.after


# -- reading payloads ------------------------------------------------------------------------------------------


def implied_by(event_type: str, payload: dict[str, Any]) -> Implied | None:
    """What a subscription or invoice event implies for its subscription; None for other types."""
    reader = _READERS.get(event_type)
    return reader(event_type, payload) if reader else None


def _read_subscription(event_type: str, payload: dict[str, Any]) -> Implied:
    sub = _object(payload)
    items = _items(sub)
    status = _status(_field(sub, "status"))
    if event_type == "customer.subscription.deleted":
        status = SubscriptionStatus.CANCELED
    return Implied(
        event_type=event_type,
        created=_created(payload),
        provider_customer_id=_customer_id(sub),
        user_id=_user_id(sub),
        provider_subscription_id=_field(sub, "id"),
        status=status,
        price_id=_price_id(sub, items),
        valid_until=_period_end(sub, items),
    )


def _read_invoice(event_type: str, payload: dict[str, Any]) -> Implied:
    invoice = _object(payload)
    failed = event_type == "invoice.payment_failed"
    return Implied(
        event_type=event_type,
        created=_created(payload),
        provider_customer_id=_customer_id(invoice),
        user_id=None,
        provider_subscription_id=None,
        status=SubscriptionStatus.PAST_DUE if failed else SubscriptionStatus.ACTIVE,
        price_id=None,
        valid_until=None,
        grace=GraceAction.START if failed else GraceAction.RESOLVE,
        billed_subscription_id=invoice_subscription_id(invoice),
    )


_INVOICE_TYPES = ("invoice.paid", "invoice.payment_succeeded", "invoice.payment_failed")
_READERS: dict[str, Callable[[str, dict[str, Any]], Implied]] = {
    "customer.subscription.created": _read_subscription,
    "customer.subscription.updated": _read_subscription,
    "customer.subscription.deleted": _read_subscription,
    **dict.fromkeys(_INVOICE_TYPES, _read_invoice),
}
SUBSCRIPTION_EVENT_TYPES = tuple(_READERS)  # the event types `implied_by` reads
# Events that may only change the user's current subscription: the end of another one (a replaced subscription)
# must not cancel it, and another one's invoice (a late payment failure of a canceled subscription, say) must not
# set its status or grace period.
_CURRENT_SUBSCRIPTION_ONLY = ("customer.subscription.deleted", *_INVOICE_TYPES)


def _object(payload: dict[str, Any]) -> dict[str, Any]:
    obj = (payload.get("data") or {}).get("object") if isinstance(payload.get("data"), dict) else None
    if not isinstance(obj, dict):
        raise HandlerError("The payload has no data.object to read.")
    return obj


def _field(obj: Any, *path: str | int, kind: type = str) -> Any:
    """The value at `path`, or None when any step is missing or null; HandlerError when it has the wrong type."""
    value = obj
    for step in path:
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and len(value) > step else None
        else:
            value = value.get(step) if isinstance(value, dict) else None
        if value is None:
            return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise HandlerError(f"data.object.{'.'.join(map(str, path))} should be a {kind.__name__}.")
    return value


def _items(sub: dict[str, Any]) -> list[Any]:
    items = _field(sub, "items", "data", kind=list)
    return items or []


def _user_id(sub: dict[str, Any]) -> str | None:
    """`metadata.user_id`, or None when absent; HandlerError when it cannot name a user (blank, over 64)."""
    user_id = _field(sub, "metadata", "user_id")
    if user_id is not None and not (user_id.strip() and len(user_id) <= MAX_USER_ID):
        raise HandlerError(
            f"data.object.metadata.user_id {user_id[:80]!r} is not a user id (1 to {MAX_USER_ID} characters, not "
            "blank); fix the subscription's metadata at the provider, then replay this event."
        )
    return user_id


def _customer_id(obj: dict[str, Any]) -> str | None:
    customer = obj.get("customer")
    return _field(customer, "id") if isinstance(customer, dict) else _field(obj, "customer")


def _status(value: str | None) -> SubscriptionStatus:
    if value in SubscriptionStatus._value2member_map_:
        return SubscriptionStatus(value)
    return _STATUS_ALIASES.get(value or "", SubscriptionStatus.UNPAID)


def _price_id(sub: dict[str, Any], items: list[Any]) -> str | None:
    return _field(items, 0, "price", "id") or _field(items, 0, "plan", "id") or _field(sub, "plan", "id")


def _period_end(sub: dict[str, Any], items: list[Any]) -> datetime | None:
    """`current_period_end` of the subscription, or (API 2025-03-31 and later) the latest of its items'."""
    seconds = _field(sub, "current_period_end", kind=int)
    if seconds is None:
        ends = [_field(item, "current_period_end", kind=int) for item in items]
        seconds = max((end for end in ends if end is not None), default=None)
    return None if seconds is None else _instant(seconds, "current_period_end")


def _created(payload: dict[str, Any]) -> datetime:
    seconds = payload.get("created")
    if type(seconds) is not int:
        raise HandlerError("The event has no integer `created`.")
    return _instant(seconds, "created")


def _instant(seconds: int, name: str) -> datetime:
    if not 0 <= seconds <= _LATEST_SECONDS:
        raise HandlerError(f"{name} {seconds} is not a Unix time billops can store.")
    return datetime.fromtimestamp(seconds, UTC)


# -- computing the change ---------------------------------------------------------------------------------------


class Target(NamedTuple):
    """The user an event is about and their rows, locked for this transaction (read once: `plan_change` and
    `apply_change` both use them)."""

    user_id: str
    customer: Customer | None  # None until `apply_change` creates it
    link: str | None  # a provider customer id to link to the user, when it is new
    subscription: Subscription | None


def lock_target(session: Session, implied: Implied) -> Target:
    """The user `implied` is about, their customer row, the provider customer id to link, their subscription.

    The customer row is locked first (in `_resolve_user`), as grace resets, overrides and reconcile lock it: it is
    the one row every user has (a reset of a user with no subscription locks nothing else), and keeping their lock
    order (customer, subscription, grace period, audit chain) means no deadlock with them.
    """
    user_id, customer, link = _resolve_user(session, implied)
    return Target(user_id, customer, link, lock_subscription(session, user_id))


def plan_change(session: Session, event_id: str, implied: Implied, target: Target) -> Change:
    """What applying `implied` would change for its user's subscription (read under lock, nothing written)."""
    user_id, _, link, subscription = target
    why = f"{implied.event_type} {event_id}"
    if subscription is None and implied.provider_subscription_id is None:
        raise HandlerError(
            f"{user_id} has no subscription yet, so {implied.event_type} cannot apply to it; replay this event "
            "once its customer.subscription.created event has been processed."
        )
    before = SubscriptionState.of(subscription) if subscription else None
    last = subscription.last_event_created_at if subscription else None
    if last is not None and implied.created < last:
        stale = (
            f"stale: event created {implied.created.isoformat()} is older than the last applied event created "
            f"{last.isoformat()} for {subscription.provider_subscription_id or user_id}"
        )
        return Change(user_id, before, before, why, implied.created, ignored=stale)
    if _about_another_subscription(implied, before):
        ignored = (
            f"ignored: {implied.event_type} is about {implied.about_subscription_id}, not {user_id}'s current "
            f"subscription {before.provider_subscription_id}, which stays as it is"
        )
        return Change(user_id, before, before, why, implied.created, ignored=ignored)
    after = merge_state(before, implied, _plan_code(session, implied.price_id))
    return Change(user_id, before, after, why, implied.created, grace=implied.grace, link_customer=link)


def _about_another_subscription(implied: Implied, before: SubscriptionState | None) -> bool:
    """Whether `implied` ends or bills another subscription than the user's current one (then it changes nothing).

    Without a stored provider subscription id (a subscription support granted, or one no subscription event has
    named yet) there is nothing to compare with, and the event applies as it always did.
    """
    current = before.provider_subscription_id if before else None
    return (
        implied.event_type in _CURRENT_SUBSCRIPTION_ONLY
        and current is not None
        and implied.about_subscription_id != current
    )


def _resolve_user(session: Session, implied: Implied) -> tuple[str, Customer | None, str | None]:
    """The user the event is about, their customer row (locked) if any, and the provider customer id to link to
    them if it is new."""
    customer_id = implied.provider_customer_id
    if customer_id is None:
        raise HandlerError("The event names no customer (data.object.customer), so billops cannot tell whose it is.")
    by_provider = _customer(session, Customer.provider_customer_id, customer_id)
    if implied.user_id is None:
        if by_provider is None:
            raise HandlerError(
                f"No customer is known for {customer_id}: billops links a provider "
                "customer to a user through metadata.user_id on its subscription. Replay this event once a "
                "customer.subscription.* event for it has been processed."
            )
        return by_provider.user_id, by_provider, None
    if by_provider is not None:
        if by_provider.user_id != implied.user_id:
            raise HandlerError(
                f"{customer_id} belongs to {by_provider.user_id}, but metadata.user_id says {implied.user_id}."
            )
        return implied.user_id, by_provider, None
    by_user = _customer(session, Customer.user_id, implied.user_id)
    linked = by_user.provider_customer_id if by_user else None
    if linked is not None:
        raise HandlerError(f"{implied.user_id} is linked to {linked}, not to {customer_id}.")
    return implied.user_id, by_user, customer_id


def _customer(session: Session, column, value: str) -> Customer | None:
    """The customer whose `column` is `value`, locked for this transaction (see `lock_target`), with its
    evidence (`keep_evidence` updates it)."""
    stmt = select(Customer).where(column == value).options(undefer(Customer.evidence)).with_for_update()
    return session.scalar(stmt)


def _plan_code(session: Session, price_id: str | None) -> str | None:
    if price_id is None:
        return None
    code = session.scalar(select(Plan.code).where(Plan.provider_price_id == price_id))
    if code is None:
        raise HandlerError(
            f"Price {price_id} is not in the plan catalog; sync the plans (POST /plans/sync), then replay this event."
        )
    return code


def merge_state(before: SubscriptionState | None, implied: Implied, plan: str | None) -> SubscriptionState:
    """`before` with what `implied` sets (its fields that are not None); `plan` is the code of its price."""
    base = before or SubscriptionState(None, implied.status, None, None)
    updates = {
        "plan": plan,
        "status": implied.status,
        "valid_until": implied.valid_until,
        "provider_subscription_id": implied.provider_subscription_id,
    }
    return replace(base, **{name: value for name, value in updates.items() if value is not None})


# -- applying it ------------------------------------------------------------------------------------------------


def apply_change(session: Session, change: Change, target: Target, ctx: HandlerContext) -> Customer | None:
    """Write `change` to the user's locked subscription (or a new one) and audit it, in the caller's transaction
    (an ignored change writes nothing). The user's customer row, which a link may have created."""
    customer, subscription = target.customer, target.subscription
    if change.ignored:
        return customer
    if change.link_customer:
        customer = _link_customer(session, customer, change, ctx.now)
    if subscription is None:
        subscription = Subscription(user_id=change.user_id, credits=0, created_at=ctx.now)
        session.add(subscription)
    if change.changes_subscription:
        for name, value in vars(change.after).items():
            setattr(subscription, name, value)
        subscription.updated_at = ctx.now
    if subscription.last_event_created_at is None or change.created > subscription.last_event_created_at:
        subscription.last_event_created_at = change.created
    session.flush()
    if change.changes_subscription:
        audit.record(
            session,
            ctx.actor,
            "subscription.update",
            change.user_id,
            change.before,
            change.after,
            now=ctx.now,
            reason=change.why,
        )
    _apply_grace(session, change, ctx)
    return customer


def _link_customer(session: Session, customer: Customer | None, change: Change, now: datetime) -> Customer:
    if customer is None:
        customer = Customer(user_id=change.user_id, provider_customer_id=change.link_customer, created_at=now)
        session.add(customer)
    else:
        customer.provider_customer_id = change.link_customer
    session.flush()
    return customer


def _apply_grace(session: Session, change: Change, ctx: HandlerContext) -> None:
    if change.grace is GraceAction.START:
        reason = f"payment failed ({change.why})"
        grace.start_grace(session, change.user_id, days=ctx.grace_days, reason=reason, actor=ctx.actor, now=ctx.now)
    elif change.grace is GraceAction.RESOLVE:
        grace.resolve_grace(
            session, change.user_id, reason=f"payment succeeded ({change.why})", actor=ctx.actor, now=ctx.now
        )


# -- the handlers -----------------------------------------------------------------------------------------------


def handle_subscription_or_invoice(session: Session, event: BillingEvent, ctx: HandlerContext) -> Outcome:
    """Set the subscription from what the event implies, unless a newer event was applied already."""
    implied = implied_by(event.type, event.payload)
    assert implied is not None  # the dispatch table only routes readable types here
    target = lock_target(session, implied)
    change = plan_change(session, event.event_id, implied, target)
    customer = apply_change(session, change, target, ctx)
    if change.ignored:
        return Outcome(EventStatus.IGNORED, change.ignored, change.user_id)
    keep_evidence(customer, implied, event, ctx.now)
    return Outcome(EventStatus.PROCESSED, None, change.user_id)


def keep_evidence(customer: Customer, implied: Implied, event: BillingEvent, now: datetime) -> None:
    """Keep what the applied event set on its customer's row (locked), for reconcile (`app/services/evidence.py`).

    The event is recorded as processed at `now`, unless it was before (an ignored event replayed).
    """
    applied = evidence.Applied(event.processed_at or now, event.id, event.type, event.event_id)
    customer.evidence = evidence.merged(customer.evidence, implied, applied)


def handle_invoice(session: Session, event: BillingEvent, ctx: HandlerContext) -> Outcome:
    """An invoice of the user's current subscription sets its status and grace period; a one-off invoice, or one of
    another subscription (`plan_change`), leaves both alone."""
    invoice = _object(event.payload)
    if invoice_subscription_id(invoice) is None:
        note = (
            f"ignored: invoice {_field(invoice, 'id') or '(no id)'} names no subscription (a one-off invoice), so "
            "it changes no subscription status or grace period"
        )
        return Outcome(EventStatus.IGNORED, note, event.user_id)
    return handle_subscription_or_invoice(session, event, ctx)


def invoice_subscription_id(invoice: dict[str, Any]) -> str | None:
    """The subscription an invoice bills: `subscription` in older API versions, `parent.subscription_details`
    from 2025-03-31 on (either may be expanded to an object)."""
    for path in (("subscription",), ("parent", "subscription_details", "subscription")):
        value = _field(invoice, *path, kind=object)
        if isinstance(value, dict):
            value = _field(value, "id")
        if isinstance(value, str) and value:
            return value
    return None


def handle_catalog(session: Session, event: BillingEvent, ctx: HandlerContext) -> Outcome:
    """A price, product or plan changed at the provider: the catalog needs a sync."""
    mark_catalog_stale(session, f"{event.type} {event.event_id}", now=ctx.now)
    return Outcome(EventStatus.PROCESSED)


Handler = Callable[[Session, BillingEvent, HandlerContext], Outcome]
HANDLERS: dict[str, Handler] = {
    **dict.fromkeys(_READERS, handle_subscription_or_invoice),
    **dict.fromkeys(_INVOICE_TYPES, handle_invoice),
}


def handler_for(event_type: str) -> Handler | None:
    """The handler for `event_type`, or None when billops ignores that type."""
    if event_type.startswith(_CATALOG_PREFIXES):
        return handle_catalog
    return HANDLERS.get(event_type)


def handle(session: Session, event: BillingEvent, ctx: HandlerContext) -> Outcome:
    """Run the event's handler in the caller's transaction; HandlerError when it cannot be applied yet."""
    handler = handler_for(event.type)
    if handler is None:
        return Outcome(EventStatus.IGNORED, f"ignored: billops does not handle {event.type} events", event.user_id)
    return handler(session, event, ctx)
