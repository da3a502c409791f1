"""Every table, imported here so Alembic's autogenerate sees the whole schema."""

from app.models.audit import AuditEntry
from app.models.customers import Customer
from app.models.events import AttemptTrigger, BillingEvent, EventAttempt, EventStatus
from app.models.grace import GracePeriod, GraceStatus
from app.models.idempotency import IdempotencyKey, IdempotencyState
from app.models.keys import AdminKey, AdminSession, AuthFailureCount, Role
from app.models.plans import CatalogState, Plan, PlanInterval
from app.models.subscriptions import Subscription, SubscriptionStatus

__all__ = [
    "AdminKey",
    "AdminSession",
    "AttemptTrigger",
    "AuditEntry",
    "AuthFailureCount",
    "BillingEvent",
    "CatalogState",
    "Customer",
    "EventAttempt",
    "EventStatus",
    "GracePeriod",
    "GraceStatus",
    "IdempotencyKey",
    "IdempotencyState",
    "Plan",
    "PlanInterval",
    "Role",
    "Subscription",
    "SubscriptionStatus",
]
