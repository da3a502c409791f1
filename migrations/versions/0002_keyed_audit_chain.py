"""Keyed audit chain; exact counting of failed authentications.

- `billing_admin_audit` gains `key_id` and `canonical`, and every existing row is re-signed with HMAC-SHA256
  under the first AUDIT_KEY of the app's configuration (Flask-Migrate runs this inside the app). The upgrade first
  checks the 0001 chain (plain SHA-256) and stops, naming the first bad row, if it does not hold: sealing it would
  vouch for a log that was already altered. `flask db upgrade -x seal_broken_audit_chain=yes` seals it anyway
  (for instance when a float re-rendered by JSONB broke an untouched row), and the upgrade logs that it did.
  Re-signing vouches for history as of the upgrade: whoever could rewrite the table before it could have.
- `auth_failure_counts`: failed authentications per address and minute (app/services/keys.py).

On PostgreSQL the append-only trigger is disabled around the re-signing, which therefore has to run as the
table's owner (as every migration does). Downgrade recomputes the 0001 hashes and drops both.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

"""

import hashlib
import json
import logging
from datetime import UTC
from types import SimpleNamespace

import sqlalchemy as sa
from alembic import context, op
from flask import current_app
from sqlalchemy.dialects import postgresql

# The signing code itself, not a copy: rows sealed here must verify exactly as rows the app writes.
from app.services.audit import GENESIS_HASH, Keyring, seal

# revision identifiers, used by Alembic.
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.runtime.migration")

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_audit = sa.table(
    "billing_admin_audit",
    sa.column("id", sa.BigInteger()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("actor", sa.String()),
    sa.column("action", sa.String()),
    sa.column("user_id", sa.String()),
    sa.column("reason", sa.Text()),
    sa.column("before", _JSON),
    sa.column("after", _JSON),
    sa.column("context", _JSON),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)
_MAC_COMMENT = "HMAC-SHA256 of canonical under key_id"
_LEGACY_COMMENT = "sha256 of canonical content + prev_hash"


def upgrade():
    rows = _audit_rows()
    _refuse_to_seal_a_broken_chain(rows)  # before any change: SQLite cannot roll DDL back
    op.create_table(
        "auth_failure_counts",
        sa.Column("address", sa.String(length=64), nullable=False, comment="client IP, normalised; * for all"),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False, comment="start of the minute counted"),
        sa.Column("failures", sa.Integer(), nullable=False, comment="failed authentications seen (audited or not)"),
        sa.Column("audited", sa.Integer(), nullable=False, comment="of those, how many have their own auth.failed row"),
        sa.PrimaryKeyConstraint("address", "window_start", name=op.f("pk_auth_failure_counts")),
    )
    with op.batch_alter_table("billing_admin_audit", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "key_id", sa.String(length=16), nullable=True, comment="which AUDIT_KEY signed the row: sha256(key)[:8]"
            )
        )
        batch_op.add_column(
            sa.Column(
                "canonical",
                sa.Text(),
                nullable=True,
                comment="the exact JSON text signed: id, content, prev_hash, key_id (ASCII)",
            )
        )
    _apply(_sealed(rows))
    with op.batch_alter_table("billing_admin_audit", schema=None) as batch_op:
        batch_op.alter_column("key_id", existing_type=sa.String(length=16), nullable=False)
        batch_op.alter_column("canonical", existing_type=sa.Text(), nullable=False)
        batch_op.alter_column(
            "hash", existing_type=sa.String(length=64), comment=_MAC_COMMENT, existing_comment=_LEGACY_COMMENT
        )


def downgrade():
    _apply(_legacy(_audit_rows()))
    with op.batch_alter_table("billing_admin_audit", schema=None) as batch_op:
        batch_op.alter_column(
            "hash", existing_type=sa.String(length=64), comment=_LEGACY_COMMENT, existing_comment=_MAC_COMMENT
        )
        batch_op.drop_column("canonical")
        batch_op.drop_column("key_id")
    op.drop_table("auth_failure_counts")


def _audit_rows():
    bind = op.get_bind()
    return [_row(row) for row in bind.execute(sa.select(_audit).order_by(_audit.c.id)).mappings()]


def _apply(rewrite):
    """Apply the (id, values) pairs `rewrite` yields, with PostgreSQL's append-only trigger off meanwhile."""
    bind = op.get_bind()
    updates = list(rewrite)
    if not updates:
        return
    postgresql_trigger = bind.dialect.name == "postgresql"
    if postgresql_trigger:
        op.execute("ALTER TABLE billing_admin_audit DISABLE TRIGGER billing_admin_audit_no_change")
    signed = sa.table(
        "billing_admin_audit", *(sa.column(name) for name in ("id", "prev_hash", "hash", "key_id", "canonical"))
    )
    for row_id, values in updates:
        bind.execute(signed.update().where(signed.c.id == row_id).values(**values))
    if postgresql_trigger:
        op.execute("ALTER TABLE billing_admin_audit ENABLE TRIGGER billing_admin_audit_no_change")
    logger.info("audit chain: %d rows re-signed", len(updates))


def _refuse_to_seal_a_broken_chain(rows):
    broken = _first_broken_legacy_row(rows)
    if broken is None:
        return
    if context.get_x_argument(as_dictionary=True).get("seal_broken_audit_chain") != "yes":
        raise RuntimeError(
            f"the audit chain is already broken at row {broken} (`flask --app wsgi billing audit-verify` on the "
            "previous release says why); investigate it, then seal it as it is with "
            "`flask --app wsgi db upgrade -x seal_broken_audit_chain=yes`"
        )
    logger.warning("audit chain broken at row %s before the upgrade: sealed as it is, as asked", broken)


def _sealed(rows):
    """Each row signed under the first AUDIT_KEY and linked to the row before it."""
    ring = Keyring.of(current_app.config["AUDIT_KEYS"])
    prev_hash = GENESIS_HASH
    for row in rows:
        row.prev_hash = prev_hash
        seal(row, ring)
        prev_hash = row.hash
        yield row.id, {"prev_hash": row.prev_hash, "hash": row.hash, "key_id": row.key_id, "canonical": row.canonical}


def _legacy(rows):
    """Each row hashed and linked as 0001 did."""
    prev_hash = GENESIS_HASH
    for row in rows:
        row.prev_hash = prev_hash
        prev_hash = _legacy_hash(row)
        yield row.id, {"prev_hash": row.prev_hash, "hash": prev_hash}


def _first_broken_legacy_row(rows):
    prev_hash = GENESIS_HASH
    for row in rows:
        if row.prev_hash != prev_hash or _legacy_hash(row) != row.hash:
            return row.id
        prev_hash = row.hash
    return None


def _legacy_hash(row):
    """0001's hash: SHA-256 over a canonical JSON of the content and the previous hash (no key, no id)."""
    content = {
        "created_at": row.created_at.isoformat(timespec="microseconds"),
        "actor": row.actor,
        "action": row.action,
        "user_id": row.user_id,
        "reason": row.reason,
        "before": row.before,
        "after": row.after,
        "context": row.context,
        "prev_hash": row.prev_hash,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _row(mapping):
    """A row as a mutable namespace, its time as an aware UTC instant (SQLite gives it back naive)."""
    row = SimpleNamespace(**mapping)
    created_at = row.created_at
    row.created_at = created_at.replace(tzinfo=UTC) if created_at.tzinfo is None else created_at.astimezone(UTC)
    return row
