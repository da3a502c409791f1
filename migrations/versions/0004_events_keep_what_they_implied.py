"""Events keep what they implied: reconcile's evidence without reading the payloads.

`billing_events` gains `implied_status`, `implied_price_id`, `implied_valid_until` and
`implied_provider_subscription_id`: what a processed subscription or invoice event says about its subscription,
as the webhook handlers' reader (`handlers.implied_by`) read it. The handler writes them when it applies an event;
this upgrade fills them for the events processed before it, in batches of BATCH rows, with the same reader (the
code itself, not a copy). Reconcile then reads these four columns instead of each event's ~5 KB payload, which
PostgreSQL fetches out of line (TOAST) and Python parses (docs/performance.md, "Reconcile at scale").

The upgrade reads every processed event's payload once: count about 3 minutes per million events on a small
machine, during which `billing_events` is locked (ADD COLUMN), so webhooks wait; run it in a quiet hour. An event
the current reader cannot read (none should be: it was read when it was processed) is left without them, logged,
and is then no evidence for reconcile. Downgrade drops the columns.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

"""

import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# The reader itself, not a copy: the kept values must be what reconcile would have read from the payload.
from app.services.errors import HandlerError
from app.services.handlers import SUBSCRIPTION_EVENT_TYPES, implied_by

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.runtime.migration")

BATCH = 2000
# Each kept column and the field of `handlers.Implied` it keeps.
KEPT = {
    "implied_status": "status",
    "implied_price_id": "price_id",
    "implied_valid_until": "valid_until",
    "implied_provider_subscription_id": "provider_subscription_id",
}
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_events = sa.table(
    "billing_events",
    sa.column("id", sa.BigInteger()),
    sa.column("type", sa.String()),
    sa.column("status", sa.String()),
    sa.column("payload", _JSON),
    sa.column("implied_status", sa.String()),
    sa.column("implied_price_id", sa.String()),
    sa.column("implied_valid_until", sa.DateTime(timezone=True)),
    sa.column("implied_provider_subscription_id", sa.String()),
)


def upgrade():
    with op.batch_alter_table("billing_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "implied_status",
                sa.Enum(
                    "trialing",
                    "active",
                    "past_due",
                    "unpaid",
                    "canceled",
                    name="subscription_status",
                    native_enum=False,
                    create_constraint=True,
                ),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("implied_price_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("implied_valid_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("implied_provider_subscription_id", sa.String(length=255), nullable=True))
    _keep_what_processed_events_implied()


def downgrade():
    with op.batch_alter_table("billing_events", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_billing_events_subscription_status"), type_="check")
        batch_op.drop_column("implied_provider_subscription_id")
        batch_op.drop_column("implied_valid_until")
        batch_op.drop_column("implied_price_id")
        batch_op.drop_column("implied_status")


def _keep_what_processed_events_implied():
    bind = op.get_bind()
    stmt = (
        sa.select(_events.c.id, _events.c.type, _events.c.payload)
        .where(_events.c.status == "processed", _events.c.type.in_(SUBSCRIPTION_EVENT_TYPES))
        .order_by(_events.c.id)
        .limit(BATCH)
    )
    update = (
        _events.update()
        .where(_events.c.id == sa.bindparam("pk"))
        .values({column: sa.bindparam(f"new_{column}") for column in KEPT})
    )
    kept = unreadable = 0
    last = None
    while rows := bind.execute(stmt if last is None else stmt.where(_events.c.id > last)).all():
        values = []
        for row in rows:
            try:
                values.append({"pk": row.id, **_kept(implied_by(row.type, row.payload))})
            except HandlerError as exc:
                unreadable += 1
                logger.warning("event %s (%s) left without what it implied: %s", row.id, row.type, exc.detail)
        if values:
            bind.execute(update, values)
        kept, last = kept + len(values), rows[-1].id
    logger.info("billing_events: what %d processed events implied is kept (%d unreadable)", kept, unreadable)


def _kept(implied):
    """The bound values of the kept columns for `implied` (the status by its value)."""
    values = {f"new_{column}": getattr(implied, field) for column, field in KEPT.items()}
    return values | {"new_implied_status": implied.status.value}
