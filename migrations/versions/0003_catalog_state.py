"""Catalog state: one row saying whether the provider's catalog changed since the last plans sync.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "billing_catalog_state",
        sa.Column("id", sa.Integer(), nullable=False, comment="always 1: there is one catalog"),
        sa.Column(
            "stale_since",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="first catalog event since the last sync",
        ),
        sa.Column(
            "stale_reason",
            sa.String(length=300),
            nullable=True,
            comment="e.g. 'price.updated evt_...'",
        ),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_catalog_state")),
    )


def downgrade():
    op.drop_table("billing_catalog_state")
