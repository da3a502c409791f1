"""The plan shape: catalog files, the API and the console."""

from marshmallow import Schema, fields, validate

from app.models.plans import PlanInterval


# Regexp validators use re.match: the patterns end in \Z, not $, which would accept a trailing newline.
class PlanSchema(Schema):
    code = fields.String(required=True, validate=validate.Regexp(r"[a-z0-9][a-z0-9_-]{0,63}\Z"))
    provider_price_id = fields.String(required=True, allow_none=True, validate=validate.Length(max=255))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    amount = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=0), metadata={"description": "minor units"}
    )
    currency = fields.String(required=True, validate=validate.Regexp(r"[a-z]{3}\Z"))
    interval = fields.Enum(PlanInterval, by_value=True, required=True)
    credits_per_period = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))
    active = fields.Boolean(load_default=True)
