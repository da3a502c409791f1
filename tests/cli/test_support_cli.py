"""billing override, grace-reset and plans-sync: the same services as the API, audited with channel cli."""

import pytest
from sqlalchemy import select

from app.config import DEFAULT_CATALOG
from app.models import AuditEntry, Plan, Subscription
from app.services import demo


@pytest.fixture
def demo_data(tx, cli_actor, frozen_clock):
    demo.load_demo_data(DEFAULT_CATALOG, actor=cli_actor, now=frozen_clock.now)


def invoke(runner, *args):
    return runner.invoke(args=["billing", *args], catch_exceptions=False)


def last_audit(tx, action):
    return tx.scalar(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id.desc()))


def test_override_changes_credits_and_audits_the_cli_actor(runner, tx, demo_data):
    result = invoke(
        runner, "override", "user-alice", "--credits-delta", "-200", "--reason", "refund", "--actor", "ops-ann"
    )
    assert result.exit_code == 0, result.output
    assert "credits: 8200 -> 8000" in result.output
    tx.expire_all()
    assert tx.scalar(select(Subscription.credits).where(Subscription.user_id == "user-alice")) == 8000
    entry = last_audit(tx, "entitlements.override")
    assert (entry.actor, entry.reason, entry.context["channel"]) == ("ops-ann", "refund", "cli")
    assert f"audit entry {entry.id}" in result.output


def test_override_sets_plan_and_expiry(runner, tx, demo_data):
    result = invoke(
        runner, "override", "user-alice", "--plan", "team", "--valid-until", "2030-12-31T23:59:59Z", "--reason", "x"
    )
    assert result.exit_code == 0, result.output
    tx.expire_all()
    row = tx.scalar(select(Subscription).where(Subscription.user_id == "user-alice"))
    assert (row.plan, row.valid_until.isoformat()) == ("team", "2030-12-31T23:59:59+00:00")


@pytest.mark.parametrize(
    "args, message",
    [
        (["user-alice", "--credits-delta", "-9000"], "credits would go below 0"),
        (["user-alice", "--credits", "-1"], "credits: Must be greater than or equal to 0"),
        (["user-alice", "--credits", "1", "--credits-delta", "1"], "send credits or credits_delta, not both"),
        (["user-alice", "--plan", "platinum"], "no active plan has the code 'platinum'"),
        (["user-alice", "--valid-until", "2020-01-01T00:00:00Z"], "valid_until: must be in the future"),
        (["user-alice", "--valid-until", "2030-01-01"], "valid_until: Not a valid aware datetime."),
        (["user-alice"], "send at least one of credits"),
        (["user-nobody", "--credits", "5"], "No customer has the user id 'user-nobody'."),
    ],
)
def test_override_refusals_print_the_api_message_and_exit_1(runner, tx, demo_data, args, message):
    before = tx.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()))
    result = runner.invoke(args=["billing", "override", *args, "--reason", "test"])
    assert result.exit_code == 1
    assert message in result.output
    assert tx.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc())) == before


def test_grace_reset_extends_and_refuses_days_out_of_range(runner, tx, demo_data, frozen_clock):
    result = invoke(runner, "grace-reset", "user-bob", "--days", "14", "--reason", "card expired")
    assert result.exit_code == 0, result.output
    assert "grace reset #1" in result.output
    assert last_audit(tx, "grace.reset").context["channel"] == "cli"
    refused = runner.invoke(args=["billing", "grace-reset", "user-bob", "--days", "91", "--reason", "x"])
    assert refused.exit_code == 1 and "days: Must be greater than or equal to 1 and less than or equal to 90" in (
        refused.output
    )


def test_plans_sync_dry_run_then_apply(runner, tx):
    dry = invoke(runner, "plans-sync", "--dry-run")
    assert dry.exit_code == 0
    assert "created: legacy-basic, pro, pro-annual, starter, team" in dry.output
    assert "dry run: nothing written" in dry.output
    assert tx.scalars(select(Plan)).all() == []
    applied = invoke(runner, "plans-sync", "--actor", "ops-ann")
    assert "synced from catalog" in applied.output
    assert len(tx.scalars(select(Plan)).all()) == 5
    assert last_audit(tx, "plans.sync").actor == "ops-ann"
    assert "unchanged: legacy-basic, pro, pro-annual, starter, team" in invoke(runner, "plans-sync").output
