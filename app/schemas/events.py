"""Billing event shapes: the list and its filters, one event, replay, and the receiver's answer."""

from datetime import datetime

from marshmallow import Schema, fields, validate

from app.models.events import EventStatus
from app.schemas.common import Cursor, JSONBoolean, ListQuery, ReasonIn, Timestamp, page_schema
from app.services import webhooks

_EVENT_TYPE = validate.Length(min=1, max=100)
_USER_ID = validate.Length(min=1, max=64)
MAX_SKIP = 10_000  # deeper than this, page with `cursor` (its cost does not grow with depth)


class EventFilterFields(Schema):
    status = fields.Enum(EventStatus, by_value=True, metadata={"description": "one of the five event statuses"})
    type = fields.String(validate=_EVENT_TYPE, metadata={"example": "invoice.payment_failed"})
    user_id = fields.String(validate=_USER_ID)
    since = Timestamp(metadata={"description": "events the provider created at or after this instant"})
    until = Timestamp(metadata={"description": "events the provider created before this instant"})


class EventsQuery(ListQuery, EventFilterFields):
    skip = fields.Integer(
        load_default=0,
        validate=validate.Range(min=0, max=MAX_SKIP),
        metadata={"description": f"rows to skip (0..{MAX_SKIP}); use `cursor` for deep pages"},
    )
    cursor = Cursor(datetime, int, scope="events")


class EventSchema(Schema):
    event_id = fields.String(metadata={"example": "evt_1Pgc76B7WZ01zgkWwyRHS12y"})
    type = fields.String()
    user_id = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "received, processed, failed, ignored or dead"})
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True, metadata={"description": "why the last attempt failed"})
    next_retry_at = Timestamp(allow_none=True)
    created_at = Timestamp(metadata={"description": "the provider's `created`"})
    received_at = Timestamp()
    processed_at = Timestamp(allow_none=True)


class AttemptSchema(Schema):
    at = Timestamp()
    trigger = fields.String(metadata={"description": "receive, retry or replay"})
    outcome = fields.String(metadata={"description": "the event's status after this attempt"})
    error = fields.String(allow_none=True, metadata={"description": "the failure, or why the event was ignored"})
    duration_ms = fields.Integer()


class EventDetailSchema(EventSchema):
    payload = fields.Dict(metadata={"description": "the event as the provider sent it"})
    attempt_history = fields.List(fields.Nested(AttemptSchema))


EventsPage = page_schema("EventsPage", EventSchema, datetime, int, scope="events")


class ReplayIn(EventFilterFields, ReasonIn):
    event_id = fields.String(validate=validate.Length(min=1, max=255))
    event_ids = fields.List(
        fields.String(validate=validate.Length(min=1, max=255)),
        validate=validate.Length(min=1, max=webhooks.MAX_REPLAY_IDS),
    )
    limit = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=webhooks.MAX_REPLAY_LIMIT),
        metadata={
            "description": f"with a filter: at most this many events, oldest first (default "
            f"{webhooks.DEFAULT_REPLAY_LIMIT})"
        },
    )
    dry_run = JSONBoolean(load_default=False, metadata={"description": "list what would run; write nothing"})


class ReplayResultSchema(Schema):
    event_id = fields.String()
    status = fields.String()
    error = fields.String(allow_none=True)


class ReplayOut(Schema):
    dry_run = fields.Boolean()
    replayed = fields.Integer()
    results = fields.List(fields.Nested(ReplayResultSchema))


class ReceiptSchema(Schema):
    event_id = fields.String()
    status = fields.String(metadata={"description": "the event's status after this delivery"})
    duplicate = fields.Boolean(metadata={"description": "the event was stored already; nothing ran again"})
