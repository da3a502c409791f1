"""The JSON API under /v1/admin/billing: routes only; the work happens in app.services."""

from app.api.blueprint import bp
from app.api import audit, subscriptions  # noqa: F401  (register the routes)

__all__ = ["bp"]
