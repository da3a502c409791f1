"""Audit log shapes."""

from marshmallow import Schema, fields, validate

from app.schemas.common import Cursor, ListQuery, Timestamp, page_schema


class AuditQuery(ListQuery):
    user_id = fields.String(validate=validate.Length(max=64))
    actor = fields.String(validate=validate.Length(max=255))
    action = fields.String(validate=validate.Length(max=64))
    since = Timestamp(metadata={"description": "entries at or after this instant"})
    until = Timestamp(metadata={"description": "entries before this instant"})
    cursor = Cursor(int, scope="audit")
    format = fields.String(
        validate=validate.OneOf(["json", "csv"]), metadata={"description": "`csv` streams every match as CSV"}
    )


class AuditEntrySchema(Schema):
    id = fields.Integer()
    created_at = Timestamp()
    actor = fields.String()
    action = fields.String()
    user_id = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    before = fields.Raw(allow_none=True, metadata={"description": "state before the change (JSON)"})
    after = fields.Raw(allow_none=True, metadata={"description": "state after the change (JSON)"})
    context = fields.Dict(metadata={"description": "channel, request_id, ip, user_agent"})


AuditPage = page_schema("AuditPage", AuditEntrySchema, int, scope="audit")
