"""The JSON API under /v1/admin/billing: routes only; the work happens in app.services."""

from app.api import audit, entitlements, events, grace, plans, reconcile, subscriptions  # noqa: F401  (register the routes)
from app.api.blueprint import bp
from app.api.webhooks import bp as webhooks_bp

__all__ = ["bp", "webhooks_bp"]
