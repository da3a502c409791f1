"""Subscription and grace period shapes."""

from marshmallow import Schema, fields

from app.schemas.common import Timestamp


class GracePeriodSchema(Schema):
    starts_at = Timestamp()
    ends_at = Timestamp()
    status = fields.String()
    reset_count = fields.Integer()
    reason = fields.String(allow_none=True)


class SubscriptionSchema(Schema):
    user_id = fields.String()
    plan = fields.String(allow_none=True, metadata={"description": "plan code"})
    status = fields.String(metadata={"description": "trialing, active, past_due, unpaid or canceled"})
    credits = fields.Integer()
    valid_until = Timestamp(allow_none=True)
    provider_subscription_id = fields.String(allow_none=True)
    version = fields.Integer(metadata={"description": "bumped by every change (optimistic locking)"})
    updated_at = Timestamp()
    grace_period = fields.Nested(
        GracePeriodSchema, allow_none=True, metadata={"description": "the active grace period, or null"}
    )
