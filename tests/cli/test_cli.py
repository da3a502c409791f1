import json

import pytest
from sqlalchemy import func, select, text

from app import cli
from app.models import AdminKey, AuditEntry, Customer

KEYS_URL = "/v1/admin/billing/audit"


def invoke(runner, *args):
    return runner.invoke(args=list(args), catch_exceptions=False)


def test_admin_keys_create_prints_the_key_alone_on_the_last_line(runner, client, tx):
    result = invoke(runner, "admin-keys", "create", "ci-bot", "--role", "support", "--actor", "alice-ops")
    assert result.exit_code == 0
    secret = result.output.strip().splitlines()[-1]
    assert secret.startswith("bok_") and " " not in secret
    assert client.get(KEYS_URL, headers={"X-Admin-Key": secret}).status_code == 200
    entry = tx.scalar(select(AuditEntry).where(AuditEntry.action == "admin_key.create"))
    assert (entry.actor, entry.context["channel"]) == ("alice-ops", "cli")


def test_admin_keys_create_refuses_a_duplicate_or_an_unknown_role(runner, tx):
    invoke(runner, "admin-keys", "create", "ci-bot", "--role", "viewer")
    duplicate = invoke(runner, "admin-keys", "create", "ci-bot", "--role", "viewer")
    assert duplicate.exit_code == 1 and "exists already" in duplicate.output
    bad_role = invoke(runner, "admin-keys", "create", "other", "--role", "root")
    assert bad_role.exit_code == 2 and "root" in bad_role.output
    assert tx.scalars(select(AdminKey.name)).all() == ["ci-bot"]


def test_admin_keys_list_shows_keys_but_never_the_secret(runner):
    secret = invoke(runner, "admin-keys", "create", "reporting", "--role", "viewer").output.strip().splitlines()[-1]
    listing = invoke(runner, "admin-keys", "list").output
    assert "reporting" in listing and "viewer" in listing
    assert secret not in listing
    assert "LAST USED" in listing and "REVOKED" in listing


def test_admin_keys_list_registers_the_admin_key_from_the_environment(app, runner, monkeypatch):
    monkeypatch.setitem(app.config, "ADMIN_KEY", "bok_env-key-0123456789-0123456789")
    assert "bootstrap" in invoke(runner, "admin-keys", "list").output


def test_admin_keys_revoke_locks_the_key_out(runner, client):
    secret = invoke(runner, "admin-keys", "create", "leaver", "--role", "admin").output.strip().splitlines()[-1]
    result = invoke(runner, "admin-keys", "revoke", "leaver")
    assert result.exit_code == 0 and "revoked 'leaver'" in result.output
    assert client.get(KEYS_URL, headers={"X-Admin-Key": secret}).status_code == 403
    unknown = invoke(runner, "admin-keys", "revoke", "nobody")
    assert unknown.exit_code == 1 and "No key is named" in unknown.output


def test_demo_data_loads_once(runner, tx):
    first = invoke(runner, "billing", "demo-data")
    assert first.exit_code == 0 and "user-alice" in first.output
    second = invoke(runner, "billing", "demo-data")
    assert "customers added: none" in second.output
    assert tx.scalar(select(Customer).where(Customer.user_id == "user-bob")) is not None


def test_audit_verify_passes_on_an_intact_chain(runner):
    invoke(runner, "billing", "demo-data")
    result = invoke(runner, "billing", "audit-verify")
    assert result.exit_code == 0 and "audit chain intact" in result.output


def test_audit_verify_fails_naming_an_edited_row(runner, tx, tamper):
    invoke(runner, "billing", "demo-data")
    row = tx.scalar(select(AuditEntry.id).where(AuditEntry.user_id == "user-bob").limit(1))
    with tamper() as session:
        session.execute(text("UPDATE billing_admin_audit SET reason = 'nothing to see' WHERE id = :id"), {"id": row})
    result = runner.invoke(args=["billing", "audit-verify"])
    assert result.exit_code == 1
    assert f"broken at row {row}" in result.output


def test_a_checkpoint_verifies_until_the_newest_row_is_cut(runner, tx, tamper, tmp_path):
    invoke(runner, "billing", "demo-data")
    printed = invoke(runner, "billing", "audit-checkpoint").output.splitlines()
    assert len(printed) == 1 and set(json.loads(printed[0])) == {
        "last_id",
        "head_hash",
        "count",
        "created_at",
        "key_id",
        "signature",
    }
    kept = tmp_path / "checkpoint.jsonl"
    kept.write_text(printed[0] + "\n")
    result = invoke(runner, "billing", "audit-verify", "--checkpoint", str(kept))
    assert result.exit_code == 0 and "checkpoint holds" in result.output

    newest = json.loads(printed[0])["last_id"]
    with tamper() as session:
        session.execute(text("DELETE FROM billing_admin_audit WHERE id = :id"), {"id": newest})
    result = runner.invoke(args=["billing", "audit-verify", "--checkpoint", str(kept)])
    assert result.exit_code == 1
    assert result.output.startswith(f"audit chain broken at row {newest}: the checkpoint's head row {newest} is gone")


def test_audit_verify_refuses_a_file_that_is_not_a_checkpoint(runner, tmp_path):
    junk = tmp_path / "junk"
    junk.write_text("not json")
    result = runner.invoke(args=["billing", "audit-verify", "--checkpoint", str(junk)])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "not an audit checkpoint" in result.output


@pytest.mark.parametrize(
    "actor, message",
    [
        ("op\udcff", "invalid Unicode"),  # an undecodable argv byte, as Python's surrogateescape hands it over
        ("x" * 256, "at most 255 characters"),
        ("op\x00", "NUL"),
        ("", "must not be empty"),
    ],
)
@pytest.mark.parametrize("command", [("admin-keys", "create", "ci-bot", "--role", "viewer"), ("billing", "demo-data")])
def test_a_bad_actor_is_one_clear_line_and_exit_1(runner, tx, actor, message, command):
    result = runner.invoke(args=[*command, "--actor", actor])
    assert result.exit_code == 1
    assert result.output.startswith("Error: --actor") and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and result.exception.__class__ is SystemExit
    assert tx.scalar(select(func.count()).select_from(AuditEntry)) == 0


def test_a_bad_operating_system_user_name_is_refused_too(runner, tx, monkeypatch):
    monkeypatch.setattr(cli.getpass, "getuser", lambda: "\udcff")
    result = runner.invoke(args=["admin-keys", "list"])
    assert result.exit_code == 1 and "--actor" in result.output


def test_a_key_name_with_a_trailing_newline_is_refused(runner, tx):
    result = invoke(runner, "admin-keys", "create", "bootstrap\n", "--role", "admin")
    assert result.exit_code == 1 and "use 1-64 letters" in result.output
    assert tx.scalars(select(AdminKey.name)).all() == []


@pytest.mark.parametrize(
    "args",
    [
        ("billing", "override", "user-\udcff", "--credits", "5", "--reason", "r"),
        ("billing", "override", "user-alice", "--plan", "p\udcff", "--reason", "r"),
        ("billing", "override", "user-alice", "--credits", "5", "--reason", "r\udcff"),
        ("billing", "grace-reset", "user-\udcff", "--days", "3", "--reason", "r"),
        ("billing", "reconcile", "--user-id", "user-\udcff"),
        ("billing", "reconcile", "--apply", "--user-id", "user-\udcff"),
        ("admin-keys", "revoke", "ci-\udcff"),
        ("admin-keys", "revoke", "ci-\x00"),
    ],
    ids=["override-user", "override-plan", "override-reason", "grace-user", "reconcile", "apply", "revoke", "nul"],
)
def test_an_argument_the_database_cannot_store_is_one_clear_line_and_exit_1(runner, tx, args):
    """Undecodable argv bytes arrive as lone surrogates: refused by name, never a traceback, nothing written."""
    result = runner.invoke(args=list(args))
    assert result.exit_code == 1, result.output
    assert result.exception.__class__ is SystemExit
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1
    assert "NUL" in result.output or "invalid Unicode" in result.output
    assert tx.scalar(select(func.count()).select_from(AuditEntry)) == 0
