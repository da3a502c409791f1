"""The plan shape: catalog files, the API and the console."""

from marshmallow import Schema, fields, validate

from app.models.plans import PlanInterval
from app.schemas.common import FullMatch, JSONBoolean, ReasonIn, Timestamp, storable
from app.services.inputs import INT32_MAX

# Plans come from a catalog file or from Stripe, not through a request's input check: what the database cannot
# store (unstorable text, numbers beyond its integer columns) is refused here.
_INT_COLUMN = validate.Range(min=0, max=INT32_MAX)


class PlanSchema(Schema):
    code = fields.String(required=True, validate=FullMatch(r"^[a-z0-9][a-z0-9_-]{0,63}$"))
    provider_price_id = fields.String(required=True, allow_none=True, validate=[validate.Length(max=255), storable])
    name = fields.String(required=True, validate=[validate.Length(min=1, max=200), storable])
    amount = fields.Integer(required=True, strict=True, validate=_INT_COLUMN, metadata={"description": "minor units"})
    currency = fields.String(required=True, validate=FullMatch(r"^[a-z]{3}$"))
    interval = fields.Enum(PlanInterval, by_value=True, required=True)
    credits_per_period = fields.Integer(required=True, strict=True, validate=_INT_COLUMN)
    active = fields.Boolean(load_default=True)


class PlanCatalogSchema(Schema):
    """Every plan (one page: `next_cursor` is always null) and whether the catalog is stale."""

    items = fields.List(fields.Nested(PlanSchema), required=True)
    total = fields.Integer(required=True)
    next_cursor = fields.String(allow_none=True, metadata={"description": "always null: the catalog is one page"})
    stale = fields.Boolean(
        required=True, metadata={"description": "a price, product or plan event arrived since the last sync"}
    )
    stale_since = Timestamp(allow_none=True, metadata={"description": "the first such event"})
    stale_reason = fields.String(allow_none=True, metadata={"description": "e.g. `price.updated evt_...`"})
    synced_at = Timestamp(allow_none=True, metadata={"description": "the last sync that wrote, or null"})


class PlansSyncIn(ReasonIn):
    dry_run = JSONBoolean(load_default=False, metadata={"description": "report what would change; write nothing"})


class PlansSyncOut(Schema):
    """Plan codes by what the sync did (or, with `dry_run`, would do) to them."""

    dry_run = fields.Boolean(required=True)
    created = fields.List(fields.String(), required=True)
    updated = fields.List(fields.String(), required=True)
    deactivated = fields.List(fields.String(), required=True)
    unchanged = fields.List(fields.String(), required=True)
