"""Event evidence: per user and subscription field, the applied event that set it last (reconcile's evidence).

`billing_event_evidence` holds, for each user and each field a subscription or invoice event sets (status, price
id, period end, provider subscription id), the value the last applied event set and which event that was
(`app/services/evidence.py`; the webhook handler keeps it from now on). Reconcile reads these few rows per customer
instead of every processed event and its ~5 KB payload, which PostgreSQL fetches out of line (TOAST) and Python
parses: docs/performance.md, "Reconcile at scale".

This upgrade fills it from the events processed before it, BATCH events at a time, reading each payload with the
webhook handlers' reader (the code itself, not a copy). That reads every processed event's payload once: count
about 10 minutes per million events on a small, busy machine, during which new webhooks still arrive and are
processed (the table is new; `billing_events` is only read), but their evidence waits for the commit. An event the
current reader cannot read (none should be: it was read when it was processed) is logged and left out.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

"""

import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

# The reader and the keeping rule themselves, not copies: what is kept must be what the handler would keep.
from app.services import evidence
from app.services.errors import HandlerError
from app.services.handlers import SUBSCRIPTION_EVENT_TYPES, implied_by

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.runtime.migration")

BATCH = 2000  # events read per query, by id range
_events = sa.table(
    "billing_events",
    sa.column("id", sa.BigInteger()),
    sa.column("event_id", sa.String()),
    sa.column("type", sa.String()),
    sa.column("user_id", sa.String()),
    sa.column("status", sa.String()),
    sa.column("payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
    sa.column("processed_at", sa.DateTime(timezone=True)),
)


def upgrade():
    evidence_table = op.create_table(
        "billing_event_evidence",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column(
            "field",
            sa.String(length=32),
            nullable=False,
            comment="status, price_id, valid_until or provider_subscription_id",
        ),
        sa.Column("value", sa.String(length=255), nullable=False, comment="as text; valid_until in ISO 8601"),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False, comment="the event's processed_at"),
        sa.Column("event_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_pk"],
            ["billing_events.id"],
            name=op.f("fk_billing_event_evidence_event_pk_billing_events"),
        ),
        sa.PrimaryKeyConstraint("user_id", "field", name=op.f("pk_billing_event_evidence")),
    )
    _keep_what_processed_events_set(evidence_table)


def downgrade():
    op.drop_table("billing_event_evidence")


def _keep_what_processed_events_set(evidence_table):
    session = Session(bind=op.get_bind())
    last_id = session.scalar(sa.select(sa.func.max(_events.c.id))) or 0
    stmt = sa.select(_events).where(
        _events.c.status == "processed", _events.c.type.in_(SUBSCRIPTION_EVENT_TYPES), _events.c.user_id.is_not(None)
    )
    kept = unreadable = 0
    for start in range(0, last_id, BATCH):
        rows = []
        for event in session.execute(stmt.where(_events.c.id > start, _events.c.id <= start + BATCH)):
            try:
                implied = implied_by(event.type, event.payload)
            except HandlerError as exc:
                unreadable += 1
                logger.warning("event %s (%s) left out of the evidence: %s", event.id, event.type, exc.detail)
                continue
            rows += evidence.rows_for(
                implied,
                user_id=event.user_id,
                applied_at=event.processed_at,
                event_pk=event.id,
                event_type=event.type,
                event_id=event.event_id,
            )
            kept += 1
        evidence.keep(session, rows, evidence_table)
    logger.info("billing_event_evidence: kept what %d processed events set (%d unreadable)", kept, unreadable)
