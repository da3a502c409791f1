"""The entitlement override: what support sends, and what it gets back."""

from __future__ import annotations

import dataclasses
from typing import Any

from marshmallow import fields, pre_dump, validate

from app.schemas.common import ReasonIn, Timestamp
from app.schemas.subscriptions import SubscriptionSchema
from app.services.entitlements import MAX_CREDITS

USER_ID = validate.Length(min=1, max=64)


class OverrideIn(ReasonIn):
    """`user_id` plus at least one change; `credits` and `credits_delta` exclude each other."""

    user_id = fields.String(required=True, validate=USER_ID)
    credits = fields.Integer(
        strict=True, validate=validate.Range(min=0, max=MAX_CREDITS), metadata={"description": "set the balance"}
    )
    credits_delta = fields.Integer(
        strict=True,
        validate=validate.Range(min=-MAX_CREDITS, max=MAX_CREDITS),
        metadata={"description": "add to (or, negative, take from) the balance; it never goes below 0"},
    )
    plan = fields.String(validate=validate.Length(min=1, max=64), metadata={"description": "an active plan code"})
    valid_until = Timestamp(metadata={"description": "new expiry, ISO 8601 with an offset, in the future"})


class OverrideOut(SubscriptionSchema):
    """The subscription after the override, and the audit entry that records it."""

    audit_id = fields.Integer(required=True)

    @pre_dump
    def flatten(self, result: Any, **kwargs: Any) -> dict[str, Any]:
        return {**dataclasses.asdict(result.subscription), "audit_id": result.audit_id}
