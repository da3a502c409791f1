"""Reconcile's evidence: what each customer's applied events last set, kept on the customer's row.

- `billing_customers.evidence`: per subscription field a subscription or invoice event sets (status, price id,
  period end, provider subscription id), the value the event applied last set and which event that was
  (`app/services/evidence.py`; the webhook handlers keep it from now on). Reconcile reads it with each customer
  instead of every processed event and its ~5 KB payload, which PostgreSQL fetches out of line (TOAST) and Python
  parses (docs/performance.md, "Reconcile at scale").
- `ix_billing_admin_audit_manual_changes`: the audit rows of manual subscription changes (not a webhook's), by
  user: reconcile's other evidence, without reading every webhook's audit row of the user too.

The upgrade fills `evidence` from the events processed before it, BATCH customers at a time, reading each payload
with the webhook handlers' reader and keeping it by the evidence's own rule (the code itself, not copies). That
reads every processed event's payload once: count 10 to 20 minutes per million events on a small, busy machine.
Stop the previous release's receivers and workers first (the provider retries undelivered webhooks for days): an
event they processed after the upgrade read its customer would be missing from the evidence. An event the current
reader cannot read (none should be: it was read when it was processed) is logged and left out.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

"""

import logging
from datetime import UTC

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

# The reader and the keeping rule themselves, not copies: what is kept must be what the handler would keep.
from app.services import evidence
from app.services.errors import HandlerError
from app.services.handlers import SUBSCRIPTION_EVENT_TYPES, implied_by

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.runtime.migration")

BATCH = 500  # customers per read of their events
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_MANUAL_CHANGE = (
    "action IN ('entitlements.override', 'subscription.update', 'reconcile.apply') AND actor NOT LIKE 'webhook:%'"
)
_customers = sa.table("billing_customers", sa.column("user_id", sa.String()), sa.column("evidence", _JSON))
_events = sa.table(
    "billing_events",
    sa.column("id", sa.BigInteger()),
    sa.column("event_id", sa.String()),
    sa.column("type", sa.String()),
    sa.column("user_id", sa.String()),
    sa.column("status", sa.String()),
    sa.column("payload", _JSON),
    sa.column("processed_at", sa.DateTime(timezone=True)),
)


def upgrade():
    with op.batch_alter_table("billing_customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("evidence", _JSON, nullable=True))
    with op.batch_alter_table("billing_admin_audit", schema=None) as batch_op:
        batch_op.create_index(
            "ix_billing_admin_audit_manual_changes",
            ["user_id"],
            unique=False,
            postgresql_where=sa.text(_MANUAL_CHANGE),
            sqlite_where=sa.text(_MANUAL_CHANGE),
        )
    _keep_the_evidence_of_processed_events()


def downgrade():
    with op.batch_alter_table("billing_admin_audit", schema=None) as batch_op:
        batch_op.drop_index("ix_billing_admin_audit_manual_changes")
    op.drop_column("billing_customers", "evidence")  # not batch: SQLite would copy the table others refer to


def _keep_the_evidence_of_processed_events():
    session = Session(bind=op.get_bind())
    customers = sa.select(_customers.c.user_id).order_by(_customers.c.user_id).limit(BATCH)
    events = sa.select(_events).where(_events.c.status == "processed", _events.c.type.in_(SUBSCRIPTION_EVENT_TYPES))
    store = _customers.update().where(_customers.c.user_id == sa.bindparam("who")).values(evidence=sa.bindparam("kept"))
    kept = unreadable = 0
    after = None
    while users := session.scalars(customers if after is None else customers.where(_customers.c.user_id > after)).all():
        documents = {}
        for event in session.execute(events.where(_events.c.user_id.in_(users)).execution_options(yield_per=1000)):
            try:
                implied = implied_by(event.type, event.payload)
            except HandlerError as exc:
                unreadable += 1
                logger.warning("event %s (%s) left out of the evidence: %s", event.id, event.type, exc.detail)
                continue
            applied = evidence.Applied(_utc(event.processed_at), event.id, event.type, event.event_id)
            documents[event.user_id] = evidence.merged(documents.get(event.user_id), implied, applied)
            kept += 1
        if documents:
            session.execute(store, [{"who": user, "kept": document} for user, document in documents.items()])
        after = users[-1]
    logger.info("billing_customers.evidence: kept what %d processed events set (%d unreadable)", kept, unreadable)


def _utc(instant):
    """An aware UTC instant (SQLite gives it back naive)."""
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)
