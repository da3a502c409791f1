"""Reconcile shapes: the preview's query and page, the apply request and its report."""

import enum
from datetime import datetime
from typing import Any

from flask import current_app
from marshmallow import Schema, ValidationError, fields, validate, validates

from app.schemas.common import Cursor, JSONBoolean, ListQuery, ReasonIn
from app.services.reconcile import MAX_APPLY_USER_IDS, Kind, Source

_USER_ID = validate.Length(min=1, max=64)


class JsonValue(fields.Raw):
    """Any JSON value; instants as ISO 8601 in UTC, enums by value (inside lists and objects too)."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return plain_json(value)


def plain_json(value: Any) -> Any:
    """`value` with instants and enums as JSON has them."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {name: plain_json(item) for name, item in value.items()}
    if isinstance(value, list):
        return [plain_json(item) for item in value]
    return value


class SourceField(fields.Enum):
    """`events` (default) or `provider`, which needs PLANS_PROVIDER=stripe."""

    def __init__(self) -> None:
        super().__init__(
            Source,
            by_value=True,
            load_default=Source.EVENTS,
            metadata={
                "description": "compare with the processed events (default) or, with PLANS_PROVIDER=stripe, "
                "with the provider's subscriptions"
            },
        )


class SourceRule(Schema):
    source = SourceField()

    @validates("source")
    def _provider_configured(self, value: Source, **_kwargs: Any) -> None:
        if value is Source.PROVIDER and current_app.config["PLANS_PROVIDER"] != "stripe":
            raise ValidationError("source=provider needs PLANS_PROVIDER=stripe; this server reads the events only")


class ReconcileQuery(ListQuery, SourceRule):
    user_id = fields.String(validate=_USER_ID, metadata={"description": "check this customer only"})
    kind = fields.Enum(Kind, by_value=True, metadata={"description": "only mismatches of this kind"})
    cursor = Cursor(str, int, scope="reconcile")


class MismatchSchema(Schema):
    user_id = fields.String(required=True)
    kind = fields.Enum(Kind, by_value=True, required=True)
    expected = JsonValue(
        required=True, allow_none=True, metadata={"description": "what the evidence implies (a value, or an object)"}
    )
    actual = JsonValue(required=True, allow_none=True, metadata={"description": "what is stored (null: no row)"})
    fix = fields.Dict(
        keys=fields.String(),
        values=JsonValue(allow_none=True),
        required=True,
        allow_none=True,
        metadata={
            "description": "the subscription fields apply sets and their new values, e.g. "
            '`{"status": "past_due"}`; null: no automatic fix, a person must decide'
        },
    )
    why = fields.String(required=True, metadata={"description": "the evidence: an event, an audit entry, the provider"})


class ReconcilePage(Schema):
    checked = fields.Integer(required=True, metadata={"description": "customers examined for this page"})
    mismatches = fields.List(fields.Nested(MismatchSchema), required=True)
    next_cursor = Cursor(
        str,
        int,
        scope="reconcile",
        allow_none=True,
        required=True,
        metadata={"description": "pass as `cursor` for the next page; null once every customer was examined"},
    )


class ReconcileApplyIn(SourceRule, ReasonIn):
    apply = JSONBoolean(
        required=True,
        validate=validate.Equal(True, error="must be true: GET /reconcile previews without changing anything"),
        metadata={"description": "must be `true`; `GET /reconcile` is the preview", "enum": [True]},
    )
    user_ids = fields.List(
        fields.String(validate=_USER_ID),
        validate=validate.Length(min=1, max=MAX_APPLY_USER_IDS),
        metadata={"description": f"fix these customers only (at most {MAX_APPLY_USER_IDS}); default: every one"},
    )


class ReconcileApplyOut(Schema):
    checked = fields.Integer(required=True)
    mismatches = fields.List(
        fields.Nested(MismatchSchema),
        required=True,
        metadata={"description": "what was found under the locks; those with a `fix` were fixed"},
    )
    fixed = fields.Integer(required=True, metadata={"description": "mismatches fixed, one audit entry each"})
