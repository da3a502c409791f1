"""The plan catalog: its entries, whether the provider changed it since the last sync, and the sync itself."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import stripe
from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.extensions import db
from app.models.plans import CatalogState, Plan, PlanInterval
from app.schemas.plans import PlanSchema
from app.services import audit
from app.services.actor import Actor
from app.services.catalog import CatalogError, load_catalog
from app.services.errors import ProviderUnavailable
from app.services.permissions import Permission, require
from app.services.uow import insert_on_conflict, unit_of_work

log = logging.getLogger(__name__)

_CATALOG_ROW = 1


@dataclass(frozen=True)
class CatalogStatus:
    stale: bool
    stale_since: datetime | None
    stale_reason: str | None
    synced_at: datetime | None


def catalog_status(session: Session) -> CatalogStatus:
    """Whether a price, product or plan event arrived since the last sync."""
    state = session.get(CatalogState, _CATALOG_ROW)
    if state is None:
        return CatalogStatus(False, None, None, None)
    return CatalogStatus(state.stale_since is not None, state.stale_since, state.stale_reason, state.synced_at)


def mark_catalog_stale(session: Session, reason: str, *, now: datetime) -> bool:
    """Note in the caller's transaction that the provider's catalog changed; False if it was already stale."""
    state = _state_for_update(session)
    if state.stale_since is not None:
        return False
    state.stale_since, state.stale_reason = now, reason[:300]
    return True


def mark_catalog_synced(session: Session, *, now: datetime) -> None:
    """Note in the caller's transaction that the catalog was just synced from the provider."""
    state = _state_for_update(session)
    state.stale_since, state.stale_reason, state.synced_at = None, None, now


def _state_for_update(session: Session) -> CatalogState:
    """The catalog's one state row, locked; created by the first catalog event. Two first events at once both
    INSERT ... ON CONFLICT DO NOTHING: the second waits for the first's row, then locks it (no unique violation)."""
    state = session.get(CatalogState, _CATALOG_ROW, with_for_update=True)
    if state is None:
        session.execute(insert_on_conflict(session, CatalogState).values(id=_CATALOG_ROW).on_conflict_do_nothing())
        state = session.get(CatalogState, _CATALOG_ROW, with_for_update=True)
    return state


# --- the catalog itself: listing, providers, sync ----------------------------------------------------------------


@dataclass(frozen=True)
class PlanSpec:
    """One plan as a provider describes it (and as a row holds it)."""

    code: str
    provider_price_id: str | None
    name: str
    amount: int
    currency: str
    interval: PlanInterval
    credits_per_period: int
    active: bool = True

    @classmethod
    def of(cls, plan: Plan) -> PlanSpec:
        return cls(**{field.name: getattr(plan, field.name) for field in fields(cls)})


@dataclass(frozen=True)
class PlanCatalog:
    """Every plan, in the list shape, with whether the provider changed the catalog since the last sync."""

    items: list[PlanSpec]
    total: int
    next_cursor: None
    stale: bool
    stale_since: datetime | None
    stale_reason: str | None
    synced_at: datetime | None


def list_plans(*, actor: Actor) -> PlanCatalog:
    """Every plan, active first, then by code; one page (a catalog is a handful of plans)."""
    require(actor, Permission.READ)
    plans = [PlanSpec.of(plan) for plan in db.session.scalars(select(Plan).order_by(Plan.active.desc(), Plan.code))]
    status = catalog_status(db.session)
    return PlanCatalog(plans, len(plans), None, status.stale, status.stale_since, status.stale_reason, status.synced_at)


class PlanProvider(Protocol):
    """Where plans come from: `fetch_plans` returns every plan the provider offers now."""

    name: str

    def fetch_plans(self) -> list[PlanSpec]: ...


class CatalogProvider:
    """The JSON or YAML catalog file (PLANS_CATALOG)."""

    name = "catalog"

    def __init__(self, path: Path) -> None:
        self.path = path

    def fetch_plans(self) -> list[PlanSpec]:
        try:
            return [PlanSpec(**spec) for spec in load_catalog(self.path)]
        except CatalogError as exc:
            raise ProviderUnavailable(str(exc)) from None


class StripeProvider:
    """Stripe's active recurring prices with their products, every page, through the official SDK.

    A price's plan code is its `lookup_key`, else the `plan_code` metadata of the price, else of its product;
    `credits_per_period` comes from the same metadata (price first, 0 when absent). The name is the price's
    nickname, else the product's name. A price without a code, not recurring, or not valid as a plan is skipped
    (and logged), as is a second price with a code already seen.
    """

    name = "stripe"
    PAGE_SIZE = 100

    def __init__(self, api_key: str | None, api_base: str | None = None, *, max_network_retries: int = 2) -> None:
        self.api_key, self.api_base, self.max_network_retries = api_key, api_base, max_network_retries

    def fetch_plans(self) -> list[PlanSpec]:
        if not self.api_key:
            raise ProviderUnavailable("PLANS_PROVIDER is stripe but STRIPE_API_KEY is not set.")
        client = stripe_client(self.api_key, self.api_base, max_network_retries=self.max_network_retries)
        params = {"active": True, "limit": self.PAGE_SIZE, "expand": ["data.product"]}
        specs: dict[str, PlanSpec] = {}
        try:
            for price in client.v1.prices.list(params=params).auto_paging_iter():
                spec = _plan_from_price(price.to_dict())
                if spec is not None and specs.setdefault(spec.code, spec) is not spec:
                    log.warning("stripe price %s repeats plan code %r; skipped", price.id, spec.code)
        except stripe.StripeError as exc:
            raise ProviderUnavailable(f"Stripe could not be read: {exc.user_message or type(exc).__name__}") from None
        return list(specs.values())


def stripe_client(api_key: str, api_base: str | None, *, max_network_retries: int) -> stripe.StripeClient:
    """The SDK's client for `api_key`, sending to `api_base` (STRIPE_API_BASE) when set, e.g. a local fake."""
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else None,
        max_network_retries=max_network_retries,
    )


def configured_provider(config: Mapping[str, Any]) -> PlanProvider:
    """The provider PLANS_PROVIDER names, set up from the app's settings."""
    if config["PLANS_PROVIDER"] == "stripe":
        return StripeProvider(config["STRIPE_API_KEY"], config["STRIPE_API_BASE"])
    return CatalogProvider(Path(config["PLANS_CATALOG"]))


@dataclass(frozen=True)
class CatalogDiff:
    """What a sync would do, computed before anything is written. Each list holds (before, after) pairs."""

    created: list[PlanSpec]
    updated: list[tuple[PlanSpec, PlanSpec]]
    deactivated: list[tuple[PlanSpec, PlanSpec]]
    unchanged: list[PlanSpec]


@dataclass(frozen=True)
class SyncReport:
    dry_run: bool
    created: list[str]
    updated: list[str]
    deactivated: list[str]
    unchanged: list[str]
    audit_id: int | None  # None for a dry run


def diff_catalog(current: list[PlanSpec], offered: list[PlanSpec]) -> CatalogDiff:
    """Match offered plans to current ones by provider price id, else by code; a current active plan the
    provider no longer offers is deactivated."""
    by_price = {plan.provider_price_id: plan for plan in current if plan.provider_price_id}
    by_code = {plan.code: plan for plan in current}
    created, updated, deactivated, unchanged = [], [], [], []
    matched: set[str] = set()
    for spec in offered:
        before = by_price.get(spec.provider_price_id) or by_code.get(spec.code)
        if before is None:
            created.append(spec)
            continue
        if before.code in matched:
            raise _unstorable(f"two offered plans match the plan {before.code!r} (one by price id, one by code)")
        matched.add(before.code)
        if before == spec:
            unchanged.append(spec)
        elif before.active and not spec.active:
            deactivated.append((before, spec))
        else:
            updated.append((before, spec))
    for plan in current:
        if plan.code in matched:
            continue
        if plan.active:
            deactivated.append((plan, replace(plan, active=False)))
        else:
            unchanged.append(plan)
    diff = CatalogDiff(created, updated, deactivated, unchanged)
    _require_storable(diff)
    return diff


def _require_storable(diff: CatalogDiff) -> None:
    """Refuse a diff after which two plans would share a code or a price id (the table allows neither)."""
    final = [*diff.created, *(after for _, after in diff.updated + diff.deactivated), *diff.unchanged]
    for label, values in (
        ("plan code", [plan.code for plan in final]),
        ("price id", [plan.provider_price_id for plan in final if plan.provider_price_id]),
    ):
        if repeated := sorted({value for value in values if values.count(value) > 1}):
            raise _unstorable(f"the {label} {repeated[0]!r} would belong to two plans")


def _unstorable(why: str) -> ProviderUnavailable:
    return ProviderUnavailable(
        f"The provider's plans cannot be stored: {why}. Fix the catalog at the provider (or PLANS_CATALOG) "
        "and sync again; nothing was changed."
    )


def sync_plans(
    provider: PlanProvider, *, dry_run: bool, reason: str | None = None, actor: Actor, now: datetime
) -> SyncReport:
    """Upsert the catalog from `provider`; with `dry_run`, report what would change and write nothing.

    A real sync writes one `plans.sync` audit row, whose reason is `reason` (why a person synced) and the provider.
    """
    require(actor, Permission.SYNC_PLANS)
    offered = provider.fetch_plans()  # before the transaction: a slow provider holds no lock
    with unit_of_work() as session:
        rows = {plan.code: plan for plan in session.scalars(select(Plan).order_by(Plan.code).with_for_update())}
        diff = diff_catalog([PlanSpec.of(plan) for plan in rows.values()], offered)
        audit_id = None if dry_run else _apply_diff(session, diff, rows, provider, reason, actor=actor, now=now)
    return SyncReport(
        dry_run=dry_run,
        created=sorted(spec.code for spec in diff.created),
        updated=sorted(after.code for _, after in diff.updated),
        deactivated=sorted(after.code for _, after in diff.deactivated),
        unchanged=sorted(spec.code for spec in diff.unchanged),
        audit_id=audit_id,
    )


def _apply_diff(
    session: Session,
    diff: CatalogDiff,
    rows: dict[str, Plan],
    provider: PlanProvider,
    reason: str | None,
    *,
    actor: Actor,
    now: datetime,
) -> int:
    """Write `diff`, mark the catalog synced, and audit it; returns the audit id."""
    changed_rows = diff.updated + diff.deactivated
    for before, _ in changed_rows:  # free every code and price id first, so two plans may trade theirs
        rows[before.code].code, rows[before.code].provider_price_id = f"~sync-{rows[before.code].id}", None
    session.flush()
    for spec in diff.created:
        session.add(Plan(**asdict(spec), created_at=now, updated_at=now))
    for before, after in changed_rows:
        plan = rows[before.code]
        for name, value in asdict(after).items():
            setattr(plan, name, value)
        plan.updated_at = now
    session.flush()
    mark_catalog_synced(session, now=now)
    changed = [(None, spec) for spec in diff.created] + diff.updated + diff.deactivated
    entry = audit.record(
        session,
        actor,
        "plans.sync",
        None,
        {before.code: before for before, _ in changed if before is not None},
        {after.code: after for _, after in changed},
        now=now,
        reason=audit.because(reason, f"from the {provider.name} provider"),
    )
    return entry.id


def _plan_from_price(price: dict[str, Any]) -> PlanSpec | None:
    """The plan a Stripe price (with its product expanded) describes, or None (logged) if it describes none."""
    product = price.get("product")
    product = product if isinstance(product, dict) else {}
    metadata = {**(product.get("metadata") or {}), **(price.get("metadata") or {})}
    code = price.get("lookup_key") or metadata.get("plan_code")
    recurring = price.get("recurring") or {}
    try:
        spec = PlanSchema().load(
            {
                "code": code,
                "provider_price_id": price.get("id"),
                "name": price.get("nickname") or product.get("name") or code,
                "amount": price.get("unit_amount"),
                "currency": price.get("currency"),
                "interval": recurring.get("interval"),
                "credits_per_period": int(metadata.get("credits_per_period", 0)),
                "active": bool(price.get("active")) and bool(product.get("active", True)),
            }
        )
    except (ValidationError, ValueError, TypeError) as exc:
        log.warning("stripe price %s is not a plan (%s); skipped", price.get("id"), getattr(exc, "messages", exc))
        return None
    return PlanSpec(**spec)
