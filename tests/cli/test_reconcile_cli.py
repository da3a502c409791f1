"""billing reconcile: the API's preview and apply from the shell, audited with channel cli."""

from sqlalchemy import select, update

from app.models import AuditEntry, Subscription
from tests.factories import PlanFactory
from tests.webhooks import PRICE, subscribe


def invoke(runner, *args):
    return runner.invoke(args=["billing", "reconcile", *args], catch_exceptions=False)


def edited(webhook_app, tx, frozen_clock):
    PlanFactory(code="starter-test", provider_price_id=PRICE)
    client = webhook_app.test_client()
    subscribe(client, frozen_clock, "user-a")
    subscribe(client, frozen_clock, "user-b")
    tx.execute(update(Subscription).where(Subscription.user_id == "user-a").values(status="canceled"))
    tx.commit()


def status_of(tx, user_id):
    tx.expire_all()
    return tx.scalar(select(Subscription.status).where(Subscription.user_id == user_id))


def test_the_report_changes_nothing(runner, webhook_app, tx, frozen_clock):
    edited(webhook_app, tx, frozen_clock)
    result = invoke(runner)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        'user-a status: expected "active", stored "canceled"; fix {"status": "active"} '
        "(customer.subscription.created evt_user-a_created)",
        "checked 2, mismatches 1; nothing changed (--apply fixes)",
    ]
    assert status_of(tx, "user-a") == "canceled"


def test_apply_fixes_and_audits_the_cli_actor(runner, webhook_app, tx, frozen_clock):
    edited(webhook_app, tx, frozen_clock)
    result = invoke(runner, "--apply", "--user-id", "user-a", "--actor", "ops-ann")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "checked 1, mismatches 1, fixed 1"
    assert status_of(tx, "user-a") == "active"
    entry = tx.scalar(select(AuditEntry).where(AuditEntry.action == "reconcile.apply"))
    assert (entry.actor, entry.user_id, entry.context["channel"]) == ("ops-ann", "user-a", "cli")
    assert invoke(runner).output.splitlines() == ["checked 2, mismatches 0; nothing changed (--apply fixes)"]


def test_refusals_print_the_api_message_and_exit_1(runner, tx):
    result = invoke(runner, "--apply", "--user-id", "user-nobody")
    assert result.exit_code == 1
    assert "No customer has the user id 'user-nobody'; nothing was fixed." in result.output
    result = invoke(runner, "--source", "provider")
    assert result.exit_code == 1
    assert "source: source=provider needs PLANS_PROVIDER=stripe" in result.output
