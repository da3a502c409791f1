"""Initial schema: every table of PRODUCT.md, and the audit log's immutability trigger on PostgreSQL.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _event_status():
    """The event status enum, used by two tables (each gets its own CHECK constraint)."""
    return sa.Enum(
        "received",
        "processed",
        "failed",
        "ignored",
        "dead",
        name="event_status",
        native_enum=False,
        create_constraint=True,
    )


def upgrade():
    op.create_table(
        "admin_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "viewer",
                "support",
                "admin",
                name="role",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column(
            "key_hash",
            sa.String(length=64),
            nullable=False,
            comment="sha256 hex of the key",
        ),
        sa.Column(
            "key_prefix",
            sa.String(length=16),
            nullable=False,
            comment="first characters, to recognise a key",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_admin_keys_key_hash")),
        sa.UniqueConstraint("name", name=op.f("uq_admin_keys_name")),
    )
    op.create_table(
        "billing_admin_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "before",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "after",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "context",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
            comment="request id, ip, user agent, channel",
        ),
        sa.Column(
            "prev_hash",
            sa.String(length=64),
            nullable=False,
            comment="hash of the previous row; zeros for the first",
        ),
        sa.Column(
            "hash",
            sa.String(length=64),
            nullable=False,
            comment="sha256 of canonical content + prev_hash",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_admin_audit")),
        sa.UniqueConstraint("hash", name=op.f("uq_billing_admin_audit_hash")),
    )
    with op.batch_alter_table("billing_admin_audit", schema=None) as batch_op:
        batch_op.create_index("ix_billing_admin_audit_action_id", ["action", "id"], unique=False)
        batch_op.create_index("ix_billing_admin_audit_action_created_at", ["action", "created_at"], unique=False)
        batch_op.create_index("ix_billing_admin_audit_actor_id", ["actor", "id"], unique=False)
        batch_op.create_index("ix_billing_admin_audit_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_billing_admin_audit_user_id_id", ["user_id", "id"], unique=False)

    op.create_table(
        "billing_customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("provider_customer_id", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_customers")),
        sa.UniqueConstraint(
            "provider_customer_id",
            name=op.f("uq_billing_customers_provider_customer_id"),
        ),
        sa.UniqueConstraint("user_id", name=op.f("uq_billing_customers_user_id")),
    )
    with op.batch_alter_table("billing_customers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_billing_customers_email"), ["email"], unique=False)

    op.create_table(
        "billing_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "event_id",
            sa.String(length=255),
            nullable=False,
            comment="provider event id (evt_...)",
        ),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "status",
            _event_status(),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="provider time (the event's `created`)",
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_billing_events_event_id")),
    )
    with op.batch_alter_table("billing_events", schema=None) as batch_op:
        batch_op.create_index("ix_billing_events_created_at_id", ["created_at", "id"], unique=False)
        batch_op.create_index(
            "ix_billing_events_status_created_at",
            ["status", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_billing_events_status_next_retry_at",
            ["status", "next_retry_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_billing_events_type_created_at",
            ["type", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_billing_events_user_id_created_at",
            ["user_id", "created_at", "id"],
            unique=False,
        )

    op.create_table(
        "billing_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("provider_price_id", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "amount",
            sa.Integer(),
            nullable=False,
            comment="price in minor units of currency (cents)",
        ),
        sa.Column(
            "currency",
            sa.String(length=3),
            nullable=False,
            comment="ISO 4217, lower case",
        ),
        sa.Column(
            "interval",
            sa.Enum(
                "day",
                "week",
                "month",
                "year",
                name="plan_interval",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("credits_per_period", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_billing_plans_amount_not_negative")),
        sa.CheckConstraint(
            "credits_per_period >= 0",
            name=op.f("ck_billing_plans_credits_per_period_not_negative"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_plans")),
        sa.UniqueConstraint("code", name=op.f("uq_billing_plans_code")),
        sa.UniqueConstraint("provider_price_id", name=op.f("uq_billing_plans_provider_price_id")),
    )
    op.create_table(
        "admin_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("admin_key_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["admin_key_id"],
            ["admin_keys.id"],
            name=op.f("fk_admin_sessions_admin_key_id_admin_keys"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_sessions")),
        sa.UniqueConstraint("session_hash", name=op.f("uq_admin_sessions_session_hash")),
    )
    with op.batch_alter_table("admin_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_admin_sessions_admin_key_id"), ["admin_key_id"], unique=False)

    op.create_table(
        "billing_event_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "event_pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "trigger",
            sa.Enum(
                "receive",
                "retry",
                "replay",
                name="attempt_trigger",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column(
            "outcome",
            _event_status(),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_pk"],
            ["billing_events.id"],
            name=op.f("fk_billing_event_attempts_event_pk_billing_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_event_attempts")),
    )
    with op.batch_alter_table("billing_event_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_billing_event_attempts_event_pk"), ["event_pk"], unique=False)

    op.create_table(
        "billing_grace_periods",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "expired",
                "resolved",
                name="grace_status",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column(
            "reset_count",
            sa.Integer(),
            nullable=False,
            comment="times support extended it",
        ),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["billing_customers.user_id"],
            name=op.f("fk_billing_grace_periods_user_id_billing_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_grace_periods")),
    )
    with op.batch_alter_table("billing_grace_periods", schema=None) as batch_op:
        batch_op.create_index(
            "ix_billing_grace_periods_status_ends_at",
            ["status", "ends_at"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_billing_grace_periods_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            "uq_billing_grace_periods_active_user",
            ["user_id"],
            unique=True,
            postgresql_where=sa.text("status = 'active'"),
            sqlite_where=sa.text("status = 'active'"),
        )

    op.create_table(
        "billing_subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column(
            "plan",
            sa.String(length=64),
            nullable=True,
            comment="plan code (billing_plans.code)",
        ),
        sa.Column(
            "status",
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
            nullable=False,
        ),
        sa.Column("credits", sa.Integer(), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provider_subscription_id", sa.String(length=255), nullable=True),
        sa.Column(
            "version",
            sa.Integer(),
            nullable=False,
            comment="optimistic lock, bumped by every update",
        ),
        sa.Column(
            "last_event_created_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="provider `created` of the newest event applied; older events are stale",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("credits >= 0", name=op.f("ck_billing_subscriptions_credits_not_negative")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["billing_customers.user_id"],
            name=op.f("fk_billing_subscriptions_user_id_billing_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_subscriptions")),
        sa.UniqueConstraint(
            "provider_subscription_id",
            name=op.f("uq_billing_subscriptions_provider_subscription_id"),
        ),
        sa.UniqueConstraint("user_id", name=op.f("uq_billing_subscriptions_user_id")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("admin_key_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column(
            "fingerprint",
            sa.String(length=64),
            nullable=False,
            comment="sha256 of method, path and body",
        ),
        sa.Column(
            "state",
            sa.Enum(
                "in_flight",
                "done",
                name="idempotency_state",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column(
            "response_body",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["admin_key_id"],
            ["admin_keys.id"],
            name=op.f("fk_idempotency_keys_admin_key_id_admin_keys"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("admin_key_id", "key", name="uq_idempotency_keys_admin_key_id_key"),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_idempotency_keys_expires_at"), ["expires_at"], unique=False)

    _protect_audit_log()


def _protect_audit_log():
    """On PostgreSQL the audit log is append-only: UPDATE, DELETE and TRUNCATE raise."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION billing_admin_audit_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'billing_admin_audit is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END;
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER billing_admin_audit_no_change BEFORE UPDATE OR DELETE ON billing_admin_audit "
        "FOR EACH ROW EXECUTE FUNCTION billing_admin_audit_append_only()"
    )
    op.execute(
        "CREATE TRIGGER billing_admin_audit_no_truncate BEFORE TRUNCATE ON billing_admin_audit "
        "FOR EACH STATEMENT EXECUTE FUNCTION billing_admin_audit_append_only()"
    )


def downgrade():
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_expires_at"))

    op.drop_table("idempotency_keys")
    op.drop_table("billing_subscriptions")
    with op.batch_alter_table("billing_grace_periods", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_billing_grace_periods_active_user",
            postgresql_where=sa.text("status = 'active'"),
            sqlite_where=sa.text("status = 'active'"),
        )
        batch_op.drop_index(batch_op.f("ix_billing_grace_periods_user_id"))
        batch_op.drop_index("ix_billing_grace_periods_status_ends_at")

    op.drop_table("billing_grace_periods")
    with op.batch_alter_table("billing_event_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_event_attempts_event_pk"))

    op.drop_table("billing_event_attempts")
    with op.batch_alter_table("admin_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_admin_sessions_admin_key_id"))

    op.drop_table("admin_sessions")
    op.drop_table("billing_plans")
    with op.batch_alter_table("billing_events", schema=None) as batch_op:
        batch_op.drop_index("ix_billing_events_user_id_created_at")
        batch_op.drop_index("ix_billing_events_type_created_at")
        batch_op.drop_index("ix_billing_events_status_next_retry_at")
        batch_op.drop_index("ix_billing_events_status_created_at")
        batch_op.drop_index("ix_billing_events_created_at_id")

    op.drop_table("billing_events")
    with op.batch_alter_table("billing_customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_customers_email"))

    op.drop_table("billing_customers")
    with op.batch_alter_table("billing_admin_audit", schema=None) as batch_op:
        batch_op.drop_index("ix_billing_admin_audit_user_id_id")
        batch_op.drop_index("ix_billing_admin_audit_created_at")
        batch_op.drop_index("ix_billing_admin_audit_actor_id")
        batch_op.drop_index("ix_billing_admin_audit_action_created_at")
        batch_op.drop_index("ix_billing_admin_audit_action_id")

    op.drop_table("billing_admin_audit")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION billing_admin_audit_append_only()")
    op.drop_table("admin_keys")
