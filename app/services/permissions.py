"""Roles and what each may do: the one permission table."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from app.models.keys import Role
from app.services.errors import PermissionDenied

if TYPE_CHECKING:
    from app.services.actor import Actor


class Permission(enum.StrEnum):
    READ = "billing.read"
    OVERRIDE_ENTITLEMENTS = "entitlements.override"
    RESET_GRACE = "grace.reset"
    REPLAY_EVENTS = "webhook.replay"
    SYNC_PLANS = "plans.sync"
    APPLY_RECONCILE = "reconcile.apply"
    MANAGE_KEYS = "admin_keys.manage"


_SUPPORT = {Permission.READ, Permission.OVERRIDE_ENTITLEMENTS, Permission.RESET_GRACE}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.SUPPORT: frozenset(_SUPPORT),
    Role.ADMIN: frozenset(Permission),
}


def allows(role: Role, permission: Permission) -> bool:
    """Whether `role` may do `permission`."""
    return permission in ROLE_PERMISSIONS[role]


def require(actor: Actor, permission: Permission) -> None:
    """Raise PermissionDenied unless the actor's role grants `permission`."""
    if not allows(actor.role, permission):
        raise PermissionDenied(f"The {actor.role} role may not do {permission}; ask an admin for a key that can.")
