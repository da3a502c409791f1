"""How the console shows things: UTC timestamps with relative time, before/after changes, navigation."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, current_app, g, url_for
from markupsafe import Markup

from app import clock
from app.services.permissions import Permission, allows


@dataclass(frozen=True)
class NavItem:
    label: str
    endpoint: str
    permission: Permission = Permission.READ


# Every page of PRODUCT.md's console table. A page appears once its view exists and the role may use it.
NAV = (
    NavItem("Dashboard", "console.dashboard"),
    NavItem("Events", "console.events"),
    NavItem("Customers", "console.customers"),
    NavItem("Override", "console.override", Permission.OVERRIDE_ENTITLEMENTS),
    NavItem("Grace reset", "console.grace_reset", Permission.RESET_GRACE),
    NavItem("Plans", "console.plans"),
    NavItem("Reconcile", "console.reconcile"),
    NavItem("Audit log", "console.audit_log"),
)
# Fields of a snapshot that every change bumps: not worth a line in "before -> after".
UNREMARKABLE = frozenset({"version", "updated_at"})


def register(bp: Blueprint) -> None:
    """Make the filters and helpers available to every template."""
    for template_filter in (utc, ago, pretty_json, shown, dotted):
        bp.add_app_template_filter(template_filter)
    for helper in (console_url, can, nav_items, before_after):
        bp.add_app_template_global(helper)
    bp.add_app_template_global(Permission, "Permission")


def utc(value: datetime | None) -> str:
    """`2026-11-29 14:03 UTC`."""
    return "" if value is None else f"{value:%Y-%m-%d %H:%M} UTC"


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago (or how far ahead) `value` is: `3 h ago`, `in 2 d`, `just now`."""
    if value is None:
        return ""
    delta = (now or clock.utcnow()) - value
    span = _span(abs(delta))
    if span is None:
        return "just now"
    return f"{span} ago" if delta > timedelta(0) else f"in {span}"


def _span(delta: timedelta) -> str | None:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size * (2 if unit != "min" else 1):
            return f"{seconds // size} {unit}"
    return None


def dotted(name: str) -> Markup:
    """A dotted name (`customer.subscription.updated`) that a narrow column may wrap after its dots only."""
    return Markup(".<wbr>").join(name.split("."))  # each part is escaped by the join


def pretty_json(value: Any) -> str:
    """A JSON value indented for reading (escaped by the template like any text)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def change_message(before: Any, after: Any) -> str:
    """`credits: 100 → 600; plan: pro → team`: each field that changed (snapshots as dicts or dataclasses)."""
    old, new = _fields(before), _fields(after)
    changes = [
        f"{name}: {shown(old.get(name))} → {shown(value)}"
        for name, value in new.items()
        if name not in UNREMARKABLE and old.get(name) != value
    ]
    return "; ".join(changes) or "nothing changed"


def before_after(before: Any, after: Any) -> list[tuple[str, Any, Any]]:
    """`(field, before, after)` for each field of the snapshots (as dicts or dataclasses), for a preview table."""
    old, new = _fields(before), _fields(after)
    return [(name, old.get(name), value) for name, value in new.items() if name not in UNREMARKABLE]


def _fields(snapshot: Any) -> Mapping[str, Any]:
    if snapshot is None:
        return {}
    if dataclasses.is_dataclass(snapshot) and not isinstance(snapshot, type):
        return {field.name: getattr(snapshot, field.name) for field in dataclasses.fields(snapshot)}
    return snapshot


def shown(value: Any) -> str:
    """A value as the console writes it: `none`, UTC times, `plan pro, status active` for a record, lists by commas."""
    if value is None:
        return "none"
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, Mapping) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        return ", ".join(f"{name} {shown(item)}" for name, item in _fields(value).items() if name not in UNREMARKABLE)
    if isinstance(value, list):
        return ", ".join(map(shown, value))
    return str(value)


def console_url(endpoint: str, **values: Any) -> str | None:
    """The page's URL, or None while that page does not exist yet (the template shows plain text)."""
    return url_for(endpoint, **values) if endpoint in current_app.view_functions else None


def can(permission: Permission) -> bool:
    """Whether the signed-in key's role may do `permission` (to show or hide a form; services still check)."""
    actor = g.get("actor")
    return actor is not None and allows(actor.role, permission)


def nav_items() -> list[tuple[NavItem, str]]:
    """The navigation the signed-in role sees, with each page's URL."""
    return [(item, url) for item in NAV if can(item.permission) and (url := console_url(item.endpoint))]
