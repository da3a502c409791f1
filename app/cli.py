"""Command line: `flask --app wsgi billing ...` and `flask --app wsgi admin-keys ...`."""

from __future__ import annotations

import getpass
import json
from functools import partial
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from marshmallow import Schema, ValidationError

from app import clock
from app.models.keys import Role
from app.retry_worker import RetryWorker
from app.schemas.entitlements import OverrideIn
from app.schemas.grace import GraceResetIn
from app.schemas.reconcile import ReconcileApplyIn, ReconcileQuery, plain_json
from app.services import audit, benchdata, demo, entitlements, grace, keys, plans, reconcile
from app.services.actor import Actor
from app.services.catalog import CatalogError
from app.services.errors import DomainError, InvalidInput
from app.services.inputs import check_actor_name, printable, text_problem


class StorableTextCommand(click.Command):
    """A command whose text arguments and options are checked before it runs: argv bytes that are not UTF-8
    arrive as lone surrogates, which no database query can take (one clear line and exit 1, not a traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        for param in self.params:
            values = ctx.params.get(param.name)
            for value in values if isinstance(values, tuple | list) else [values]:
                if isinstance(value, str) and (problem := text_problem(value)):
                    raise click.ClickException(f"{param.get_error_hint(ctx)} {printable(value)[:40]!r} {problem}")
        return super().invoke(ctx)


billing = AppGroup("billing", help="Billing operations.")
admin_keys = AppGroup("admin-keys", help="Create, list and revoke admin keys.")
billing.command_class = admin_keys.command_class = StorableTextCommand


def init_app(app: Flask) -> None:
    app.cli.add_command(billing)
    app.cli.add_command(admin_keys)


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "cli"


def _valid_actor(_ctx: click.Context, _param: click.Parameter, name: str) -> str:
    """Every command's --actor (and the OS user it defaults to) is checked here, before anything runs."""
    try:
        return check_actor_name(name)
    except InvalidInput as exc:  # argv bytes that are not UTF-8 arrive as lone surrogates
        raise click.ClickException(f"--actor {printable(name)[:40]!r} {exc.errors['actor'][0]}") from None


actor_option = click.option(
    "--actor",
    default=_default_actor,
    show_default="the OS user",
    callback=_valid_actor,
    help="Name written to the audit log (1-255 characters).",
)


def _run(action):
    """Run a service call, turning a refusal into a clear message and exit status 1."""
    try:
        return action()
    except (DomainError, CatalogError) as exc:
        raise click.ClickException(getattr(exc, "detail", str(exc))) from None


@billing.command("demo-data")
@actor_option
def demo_data(actor: str) -> None:
    """Load the demo plans, customers and subscriptions (safe to run again)."""
    config = current_app.config
    report = _run(
        lambda: demo.load_demo_data(
            config["PLANS_CATALOG"], actor=Actor.cli(actor), now=clock.utcnow(), grace_days=config["GRACE_PERIOD_DAYS"]
        )
    )
    click.echo(f"plans added: {', '.join(report.plans_created) or 'none'}")
    click.echo(f"customers added: {', '.join(report.customers_created) or 'none'}")
    click.echo(f"events added: {len(report.events_created) or 'none'}")


@billing.command("bench-data")
@click.option("--events", type=click.IntRange(min=0), default=100_000, show_default=True, help="Webhook events.")
@click.option(
    "--subscriptions",
    type=click.IntRange(min=0),
    default=10_000,
    show_default=True,
    help="Users, each a customer with a subscription.",
)
@click.option("--seed", type=int, default=15, show_default=True, help="The same seed and sizes give the same rows.")
@click.option("--force", is_flag=True, help="Write even into a database holding customers that are not bench-*.")
def bench_data(events: int, subscriptions: int, seed: int, force: bool) -> None:
    """Fill the database with benchmark data in bulk (docs/performance.md); running it again adds nothing."""
    report = _run(lambda: benchdata.load_bench_data(events, subscriptions, seed=seed, force=force))
    click.echo(f"customers added: {report.customers}")
    click.echo(f"events added: {report.events}")
    click.echo(f"audit rows added: {report.audit_rows}")
    click.echo(f"subscriptions set to what their events imply: {report.subscriptions_aligned}")
    click.echo(f"chunks already present: {report.chunks_skipped}")


@billing.command("worker")
@click.option("--once", is_flag=True, help="Drain what is due now, then exit.")
def worker(once: bool) -> None:
    """Retry failed webhooks, take over stranded ones, expire grace periods (until SIGTERM)."""
    retry_worker = RetryWorker(grace_days=current_app.config["GRACE_PERIOD_DAYS"])
    if once:
        report = retry_worker.drain()
        click.echo(f"events run: {len(report.events)}; grace periods expired: {len(report.expired_grace)}")
        return
    retry_worker.install_signal_handlers()
    click.echo("retry worker running; SIGTERM finishes the current batch and exits", err=True)
    retry_worker.run_forever()


def _load(schema: type[Schema], values: dict[str, Any]) -> dict[str, Any]:
    """Validate options with the API's own schema; a refusal names each field as the API's `errors` do."""
    try:
        return schema().load({name: value for name, value in values.items() if value is not None})
    except ValidationError as exc:
        lines = [f"{name}: {' '.join(messages)}" for name, messages in exc.normalized_messages().items()]
        raise click.ClickException("\n".join(lines)) from None


@billing.command("override")
@click.argument("user_id")
@click.option("--credits", type=int, help="Set the balance (0 or more).")
@click.option("--credits-delta", type=int, help="Add to the balance (negative: take away; never below 0).")
@click.option("--plan", help="An active plan code.")
@click.option("--valid-until", help="New expiry, ISO 8601 with an offset, e.g. 2030-12-31T23:59:59Z.")
@click.option("--reason", required=True, help="Why; kept in the audit log.")
@actor_option
def override(user_id: str, credits, credits_delta, plan, valid_until, reason: str, actor: str) -> None:
    """Override a user's credits, plan or expiry; what is not given stays as it is."""
    values = {"user_id": user_id, "credits": credits, "credits_delta": credits_delta, "plan": plan}
    data = _load(OverrideIn, values | {"valid_until": valid_until, "reason": reason})
    result = _run(lambda: entitlements.override_entitlements(**data, actor=Actor.cli(actor), now=clock.utcnow()))
    before, after = result.change.before, result.change.after
    for name in ("plan", "credits", "valid_until"):
        old, new = (getattr(before, name) if before else None), getattr(after, name)
        if old != new or before is None:
            click.echo(f"{name}: {_value(old)} -> {_value(new)}")
    click.echo(f"{user_id} overridden (audit entry {result.audit_id})")


@billing.command("grace-reset")
@click.argument("user_id")
@click.option("--days", type=int, required=True, help="The grace period ends this many days from now (1-90).")
@click.option("--reason", required=True, help="Why; kept in the audit log.")
@actor_option
def grace_reset(user_id: str, days: int, reason: str, actor: str) -> None:
    """Extend a user's grace period to now + days (never shortening it), or start one."""
    data = _load(GraceResetIn, {"user_id": user_id, "days": days, "reason": reason})
    result = _run(lambda: grace.reset_grace(**data, actor=Actor.cli(actor), now=clock.utcnow()))
    before = _value(result.before.ends_at if result.before else None)
    click.echo(f"grace period ends: {before} -> {_value(result.grace_period.ends_at)}")
    click.echo(f"{user_id} grace reset #{result.grace_period.reset_count} (audit entry {result.audit_id})")


@billing.command("plans-sync")
@click.option("--dry-run", is_flag=True, help="Only report what would change.")
@actor_option
def plans_sync(dry_run: bool, actor: str) -> None:
    """Upsert the plan catalog from PLANS_PROVIDER (the catalog file or Stripe)."""
    provider = plans.configured_provider(current_app.config)
    report = _run(lambda: plans.sync_plans(provider, dry_run=dry_run, actor=Actor.cli(actor), now=clock.utcnow()))
    for outcome in ("created", "updated", "deactivated", "unchanged"):
        click.echo(f"{outcome}: {', '.join(getattr(report, outcome)) or 'none'}")
    click.echo(
        "dry run: nothing written" if dry_run else f"synced from {provider.name} (audit entry {report.audit_id})"
    )


@billing.command("reconcile")
@click.option("--apply", "apply_fixes", is_flag=True, help="Apply the fixes (default: only report them).")
@click.option("--user-id", "user_ids", multiple=True, help="Only this customer (repeat for several).")
@click.option(
    "--source",
    type=click.Choice([source.value for source in reconcile.Source]),
    default=reconcile.Source.EVENTS.value,
    show_default=True,
    help="Compare with the processed events, or (PLANS_PROVIDER=stripe) with the provider.",
)
@actor_option
def reconcile_command(apply_fixes: bool, user_ids: tuple[str, ...], source: str, actor: str) -> None:
    """Report where subscriptions differ from what their events (or the provider) imply; --apply fixes them."""
    provider = reconcile.configured_provider(current_app.config)
    if apply_fixes:
        data = _load(ReconcileApplyIn, {"apply": True, "user_ids": list(user_ids) or None, "source": source})
        del data["apply"]
        now = clock.utcnow()
        report = _run(lambda: reconcile.apply_fixes(**data, provider=provider, actor=Actor.cli(actor), now=now))
        checked, mismatches = report.checked, report.mismatches
    else:
        checked, mismatches = 0, []
        for user_id in user_ids or [None]:
            query = _load(ReconcileQuery, {"source": source, "user_id": user_id})
            for page in _pages(query, provider, Actor.cli(actor)):
                checked, mismatches = checked + page.checked, mismatches + page.mismatches
    for mismatch in mismatches:
        fix = "no automatic fix" if mismatch.fix is None else f"fix {_as_json(mismatch.fix)}"
        click.echo(
            f"{mismatch.user_id} {mismatch.kind}: expected {_as_json(mismatch.expected)}, "
            f"stored {_as_json(mismatch.actual)}; {fix} ({mismatch.why})"
        )
    summary = f"checked {checked}, mismatches {len(mismatches)}"
    click.echo(f"{summary}, fixed {report.fixed}" if apply_fixes else f"{summary}; nothing changed (--apply fixes)")


def _pages(query: dict[str, Any], provider, actor: Actor):
    """Every page of the preview `query` asks for."""
    page = None
    while page is None or page.next_cursor is not None:
        after = page.next_cursor if page else None
        page = _run(partial(reconcile.find_mismatches, **query, after=after, provider=provider, actor=actor))
        yield page


@billing.command("audit-verify")
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.File("r"),
    help="A file holding a checkpoint from `billing audit-checkpoint`: also prove no row was cut from the end.",
)
def audit_verify(checkpoint_file) -> None:
    """Check the audit log's HMAC chain (and a checkpoint); exit 1 naming the first bad row."""
    expected = _read_checkpoint(checkpoint_file) if checkpoint_file else None
    report = _verified(audit.verify_chain(expected))
    click.echo(f"audit chain intact: {report.checked} rows")
    if expected is not None:
        click.echo(f"checkpoint holds: row {expected.last_id} is still the head of its first {expected.count} rows")


@billing.command("audit-checkpoint")
def audit_checkpoint() -> None:
    """Verify the chain and print a signed checkpoint of its head: one JSON line to keep outside the database."""
    report = _verified(audit.verify_chain())
    click.echo(audit.checkpoint(report, now=clock.utcnow()).to_json())


def _read_checkpoint(file) -> audit.Checkpoint:
    try:
        return audit.Checkpoint.from_json(file.read())
    except ValueError as exc:
        raise click.ClickException(f"{file.name}: {exc}") from None


def _verified(report: audit.ChainReport) -> audit.ChainReport:
    """`report` if the chain holds; otherwise its problem on stderr and exit status 1."""
    if report.ok:
        return report
    if report.first_bad_id is None:
        click.echo(f"audit checkpoint rejected: {report.problem}", err=True)
    else:
        click.echo(
            f"audit chain broken at row {report.first_bad_id}: {report.problem} "
            f"({report.checked} rows before it are intact)",
            err=True,
        )
    raise SystemExit(1)


@admin_keys.command("create")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice([role.value for role in Role]))
@actor_option
def create_key(name: str, role: str, actor: str) -> None:
    """Create a key; it is printed once, alone on the last line."""
    created = _run(lambda: keys.create_key(name, role, actor=Actor.cli(actor), now=clock.utcnow()))
    click.echo(f"created {created.info.role} key {created.info.name!r}; store it now, it is not shown again:")
    click.echo(created.secret)


@admin_keys.command("list")
@actor_option
def list_keys(actor: str) -> None:
    """List keys: name, role, created, last used, revoked (never the key)."""
    if current_app.config["ADMIN_KEY"]:
        keys.register_bootstrap_key(current_app.config["ADMIN_KEY"], actor=Actor.cli(actor), now=clock.utcnow())
    rows = _run(lambda: keys.list_keys(actor=Actor.cli(actor)))
    click.echo(f"{'NAME':<24} {'ROLE':<8} {'PREFIX':<12} {'CREATED':<20} {'LAST USED':<20} REVOKED")
    for key in rows:
        click.echo(
            f"{key.name:<24} {key.role:<8} {key.key_prefix:<12} {_when(key.created_at):<20} "
            f"{_when(key.last_used_at):<20} {_when(key.revoked_at)}"
        )


@admin_keys.command("revoke")
@click.argument("name")
@actor_option
def revoke_key(name: str, actor: str) -> None:
    """Revoke a key at once; its console sessions end too."""
    info = _run(lambda: keys.revoke_key(name, actor=Actor.cli(actor), now=clock.utcnow()))
    click.echo(f"revoked {info.name!r} at {_when(info.revoked_at)}")


def _value(value: Any) -> str:
    return "none" if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)


def _as_json(value: Any) -> str:
    return json.dumps(plain_json(value))


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"
