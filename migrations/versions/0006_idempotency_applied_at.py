"""Idempotency keys record when their request's change committed, so a retry after a crash never runs it twice.

A key is claimed (committed `in_flight`) before the request's work, and its answer stored after it. A process
that died in between left the key `in_flight`, and a retry after `IN_FLIGHT_TIMEOUT` took it over and ran the
request again, even when the first run's change had committed (credits granted twice). `applied_at` is written in
the transaction of the change itself (app/services/idempotency.py), so a retry can tell the two cases apart. Rows
of earlier releases keep NULL: their requests answered, or died before this column existed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "applied_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="when a transaction of the request committed; written in that transaction",
            )
        )


def downgrade():
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_column("applied_at")
