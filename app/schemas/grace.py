"""The grace period reset: what support sends, and what it gets back."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.schemas.common import ReasonIn
from app.schemas.entitlements import USER_ID
from app.schemas.subscriptions import GracePeriodSchema
from app.services.grace import MAX_RESET_DAYS, MIN_RESET_DAYS


class GraceResetIn(ReasonIn):
    user_id = fields.String(required=True, validate=USER_ID)
    days = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=MIN_RESET_DAYS, max=MAX_RESET_DAYS),
        metadata={"description": "the period ends `days` from now, unless it already ends later"},
    )


class GraceResetOut(Schema):
    user_id = fields.String(required=True)
    grace_period = fields.Nested(GracePeriodSchema, required=True)
    audit_id = fields.Integer(required=True)
