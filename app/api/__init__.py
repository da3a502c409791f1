"""The JSON API under /v1/admin/billing: routes only; the work happens in app.services."""

from app.api import audit, entitlements, grace, plans, subscriptions  # noqa: F401  (register the routes)
from app.api.blueprint import bp

__all__ = ["bp"]
