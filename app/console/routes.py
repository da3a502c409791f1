"""Console pages: parse, call one service, render (or flash and redirect)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flask
from flask import current_app, flash, redirect, render_template, request, url_for
from marshmallow import Schema
from werkzeug.exceptions import TooManyRequests

from app import clock
from app.audit_csv import csv_response
from app.auth import actor_for, current_actor
from app.console import access, display
from app.console.forms import (
    AuditFilterForm,
    ChangeForm,
    ConsoleGraceResetIn,
    ConsoleOverrideIn,
    EventFilterForm,
    GraceResetForm,
    LoginForm,
    OverrideForm,
    PlansSyncForm,
    ReconcileApplyForm,
    ReconcileFilterForm,
    ReplayForm,
    add_errors,
    customer_state,
    error_summary,
    load_form,
    reason_given,
    render_confirmation,
    schema_hints,
    submit,
)
from app.schemas.audit import AuditQuery
from app.schemas.common import encode_cursor
from app.schemas.entitlements import OverrideIn
from app.schemas.events import EventsQuery, ReplayIn
from app.schemas.grace import GraceResetIn
from app.schemas.reconcile import ReconcileApplyIn, ReconcileQuery
from app.services import audit, customers, dashboard, entitlements, events, grace, plans, reconcile, webhooks
from app.services.actor import Channel
from app.services.errors import AuthRequired
from app.services.pagination import MAX_LIMIT, Page
from app.services.permissions import Permission

bp = flask.Blueprint("console", __name__, url_prefix="/admin")
bp.before_request(access.require_session)
display.register(bp)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in with an admin key; a wrong key is audited, and the 11th failure a minute from one address is refused."""
    form = LoginForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        now, origin = clock.utcnow(), access.origin()
        if access.login_limited(origin.ip, now=now):
            raise TooManyRequests("Too many failed sign-ins from your address. Wait a minute, then try again.")
        try:
            key = access.check_key(form.admin_key.data, origin=origin, now=now)
        except AuthRequired as exc:
            add_errors(form, {"admin_key": [exc.detail]})
        else:
            access.sign_in(key, actor_for(key, Channel.CONSOLE), now=now)
            flash(f"Signed in as {key.name} ({key.role}).")
            return redirect(access.safe_next(form.next.data) or url_for("console.dashboard"))
    status = 401 if request.method == "POST" else 200
    return render_template("console/login.html", form=form), status


@bp.post("/logout")
def logout():
    """End the session; the cookie's old id opens nothing afterwards."""
    access.sign_out(current_actor(), now=clock.utcnow())
    flash("Signed out.")
    return redirect(url_for("console.login"))


@bp.get("/", endpoint="dashboard")
def dashboard_page():
    """What needs attention: failed and dead events, the oldest waiting event, grace periods, recent actions."""
    return render_template("console/dashboard.html", board=dashboard.get_dashboard(actor=current_actor()))


@bp.get("/customers", endpoint="customers")
def customers_page():
    """Find a customer by user id, email or `cus_` id; a single match opens its page."""
    query = request.args.get("q", "").strip()
    matches = customers.search_customers(query, actor=current_actor()) if query else []
    if len(matches) == 1:
        return redirect(url_for("console.customer", user_id=matches[0].user_id))
    return render_template("console/customers/search.html", query=query, matches=matches)


@bp.get("/customers/<string:user_id>")
def customer(user_id: str):
    """The customer's subscription on top, and one timeline of everything that happened to them."""
    return render_template(
        "console/customers/detail.html", page=customers.get_customer_page(user_id, actor=current_actor())
    )


@bp.get("/audit")
def audit_log():
    """The audit log with the API's filters and keyset pages; `format=csv` downloads every match."""
    form = AuditFilterForm(request.args)
    query = load_form(AuditQuery, form, cursor=request.args.get("cursor"), format=request.args.get("format"))
    if query is None:
        return render_template("console/audit.html", form=form, actions=audit.ACTIONS, page=None), 400
    limit, after, fmt = query.pop("limit"), query.pop("cursor", None), query.pop("format", None)
    filters = audit.AuditFilter(**query)
    if fmt == "csv":
        return csv_response(audit.iter_entries(filters, actor=current_actor()))
    page = audit.list_entries(filters, actor=current_actor(), after=after, limit=limit)
    return render_template(
        "console/audit.html",
        form=form,
        actions=audit.ACTIONS,
        page=page,
        **page_links("console.audit_log", page, after, scope="audit"),
        csv_url=url_for("console.audit_log", **kept_args(), format="csv"),
    )


def kept_args() -> dict[str, str]:
    """The list's filters as the browser sent them, without the page position or the download format."""
    return {name: value for name, value in request.args.items() if name not in ("cursor", "format") and value}


def page_links(endpoint: str, page: Page, after: Any, *, scope: str) -> dict[str, str | None]:
    """`next_url` (the next keyset page, the filters kept) and `first_url` (back to the newest, once paged)."""
    kept = kept_args()
    return {
        "next_url": page.next_cursor and url_for(endpoint, **kept, cursor=encode_cursor(page.next_cursor, scope=scope)),
        "first_url": after and url_for(endpoint, **kept),
    }


# -- events -----------------------------------------------------------------------------------------------------


@bp.get("/events", endpoint="events")
def events_list():
    """Billing events with the API's filters and keyset pages; an admin may replay the filtered set."""
    form = EventFilterForm(request.args)
    query = load_form(EventsQuery, form, cursor=request.args.get("cursor"))
    if query is None:
        return render_template("console/events/list.html", form=form, page=None), 400
    limit, after, _ = query.pop("limit"), query.pop("cursor", None), query.pop("skip")
    filters = events.EventFilter(**query)
    page = events.list_events(filters, actor=current_actor(), after=after, limit=limit)
    replay_form = ReplayForm(**{name: getattr(form, name).data for name in query}) if not filters.empty else None
    return render_template(
        "console/events/list.html",
        form=form,
        page=page,
        replay_form=replay_form,
        **page_links("console.events", page, after, scope="events"),
    )


@bp.get("/events/<string:event_id>", endpoint="event")
def event_detail(event_id: str):
    """One event: its payload, every attempt (and why a stale one was ignored), and for admins a replay button."""
    return render_template(
        "console/events/detail.html",
        event=events.get_event(event_id, actor=current_actor()),
        replay_form=ReplayForm(event_id=event_id),
    )


@bp.post("/events/replay", endpoint="replay")
@access.requires(Permission.REPLAY_EVENTS)
def replay_events():
    """Replay one event at once, or the filtered set after a confirmation listing what would run (admin).

    Both need a reason: one event's is typed beside its button (errors show on the event's page), a set's on the
    confirmation. The confirmation pins the ids it listed: exactly those run, even if more events match by then.
    """
    form = ReplayForm()
    back = _replay_return(form)
    data = _replay_input(form)
    single = data is not None and "event_id" in data
    if data is not None and (single or form.is_confirmed()) and reason_given(form):
        report = submit(form, _replay, data, not_found_field="event_id")
        if report is not None:
            flash(
                f"Replayed {_count(report.replayed, 'event')}: " + "; ".join(_outcome(r) for r in report.results) + "."
            )
            return redirect(back)
    elif data is not None and not single:
        preview = submit(form, _replay, data | {"dry_run": True}, not_found_field="event_id")
        if preview is not None and preview.results:
            return render_confirmation(
                title=f"Replay {_count(len(preview.results), 'event')}",
                items=[f"replay {r.event_id} (now {r.status})" for r in preview.results],
                action=url_for("console.replay"),
                cancel=back,
                form=form,
                pinned=[] if form.is_confirmed() else [("event_ids", result.event_id) for result in preview.results],
            )
        if preview is not None:
            form.form_errors.append("No event matches these filters; nothing was replayed.")
    if single:
        event = events.get_event(data["event_id"], actor=current_actor())
        return render_template("console/events/detail.html", event=event, replay_form=form)
    flash(error_summary(form), "error")
    return redirect(back)


def _replay_input(form: ReplayForm) -> dict[str, Any] | None:
    """The replay's input by the API's schema: one event, the filter, or (confirmed) the ids the preview pinned."""
    pinned = request.form.getlist("event_ids") if form.is_confirmed() else []
    data = load_form(ReplayIn, form, **({"event_ids": pinned} if pinned else {}))
    if data is not None and pinned:
        data = {name: value for name, value in data.items() if name not in events.FILTER_FIELDS}
    return data


def _replay(data: dict[str, Any]) -> webhooks.ReplayReport:
    grace_days = current_app.config["GRACE_PERIOD_DAYS"]
    return webhooks.replay_events(**data, actor=current_actor(), grace_days=grace_days, now=clock.utcnow())


def _replay_return(form: ReplayForm) -> str:
    """Where the browser goes after a replay: the event's page, or the list with the filters replayed."""
    if form.event_id.data:
        return url_for("console.event", event_id=form.event_id.data)
    kept = {name: field.data for name, field in form._fields.items() if name in events.FILTER_FIELDS and field.data}
    return url_for("console.events", **kept)


def _outcome(result: webhooks.EventResult) -> str:
    return f"{result.event_id} {result.status}" + (f" ({result.error})" if result.error else "")


# -- changes to one customer -------------------------------------------------------------------------------------


@bp.route("/override", methods=["GET", "POST"])
@access.requires(Permission.OVERRIDE_ENTITLEMENTS)
def override():
    """Set or adjust a customer's credits, plan or expiry, with a reason (support+); Preview first if you like."""
    form = OverrideForm(user_id=request.args.get("user_id", ""))
    form.offer_plans(plan.code for plan in plans.list_plans(actor=current_actor()).items if plan.active)
    return _change_page(
        form,
        ChangePage(
            ConsoleOverrideIn,
            apply=entitlements.override_entitlements,
            preview=entitlements.preview_override,
            describe=lambda result: display.change_message(result.change.before, result.change.after),
            template="console/override.html",
        ),
        hints=schema_hints(OverrideIn),
    )


@bp.route("/grace-reset", methods=["GET", "POST"])
@access.requires(Permission.RESET_GRACE)
def grace_reset():
    """Start or extend a customer's grace period, with a reason (support+); Preview first if you like."""
    form = GraceResetForm(user_id=request.args.get("user_id", ""))
    return _change_page(
        form,
        ChangePage(
            ConsoleGraceResetIn,
            apply=grace.reset_grace,
            preview=grace.preview_grace_reset,
            describe=lambda result: "grace period " + display.change_message(result.before, result.grace_period),
            template="console/grace_reset.html",
        ),
        hints=schema_hints(GraceResetIn),
    )


@dataclass(frozen=True)
class ChangePage:
    """A change form's parts: its schema, the service that applies it and the one that previews it (same input,
    same refusals, nothing written), the success message from the service's result, and the template."""

    schema: type[Schema]
    apply: Callable[..., Any]
    preview: Callable[..., Any]
    describe: Callable[[Any], str]
    template: str


def _change_page(form: ChangeForm, page: ChangePage, **context):
    """A change form: validate, then preview (render the change computed, nothing written) or apply (flash what
    changed and show the customer); else inline errors. The customer's current state is shown beside it."""
    preview = None
    if form.validate_on_submit() and (data := load_form(page.schema, form)):
        service = page.preview if form.previewing() else page.apply
        result = submit(form, service, **data, actor=current_actor(), now=clock.utcnow())
        if result is not None and form.previewing():
            preview = result
        elif result is not None:
            flash(f"{data['user_id']}: {page.describe(result)}.")
            return redirect(url_for("console.customer", user_id=data["user_id"]))
    state = customer_state(form.user_id.data, actor=current_actor())
    return render_template(page.template, form=form, state=state, preview=preview, **context)


# -- plans ------------------------------------------------------------------------------------------------------


@bp.get("/plans", endpoint="plans")
def plans_page():
    """The plan catalog, active plans first, with a banner when the provider changed it since the last sync."""
    return render_template(
        "console/plans.html", catalog=plans.list_plans(actor=current_actor()), sync_form=PlansSyncForm()
    )


@bp.post("/plans/sync")
@access.requires(Permission.SYNC_PLANS)
def plans_sync():
    """Sync the catalog from the provider: first the dry-run diff, then, confirmed with a reason, the sync (admin)."""
    form = PlansSyncForm()
    provider = plans.configured_provider(current_app.config)
    apply = form.is_confirmed() and reason_given(form)
    reason = form.reason.data if apply else None
    report = plans.sync_plans(provider, dry_run=not apply, reason=reason, actor=current_actor(), now=clock.utcnow())
    if report.dry_run:
        return render_confirmation(
            title=f"Sync the plan catalog from the {provider.name} provider",
            items=_sync_lines(report),
            action=url_for("console.plans_sync"),
            cancel=url_for("console.plans"),
            form=form,
        )
    flash("Plans synced: " + "; ".join(_sync_lines(report)) + ".")
    return redirect(url_for("console.plans"))


def _sync_lines(report: plans.SyncReport) -> list[str]:
    """What the sync does to each plan, one line per kind of change."""
    kinds = (("create", report.created), ("update", report.updated), ("deactivate", report.deactivated))
    lines = [f"{verb} {', '.join(codes)}" for verb, codes in kinds if codes]
    return [*lines, f"leave {len(report.unchanged)} unchanged ({', '.join(report.unchanged) or 'none'})"]


# -- reconcile --------------------------------------------------------------------------------------------------


@bp.get("/reconcile", endpoint="reconcile")
def reconcile_page():
    """Where stored subscriptions differ from their evidence, with the fixes; admins may apply them."""
    form = ReconcileFilterForm(request.args)
    query = load_form(ReconcileQuery, form, cursor=request.args.get("cursor"))
    if query is None:
        return render_template("console/reconcile.html", form=form, page=None, **_reconcile_context()), 400
    limit, after = query.pop("limit"), query.pop("cursor", None)
    page = reconcile.find_mismatches(
        actor=current_actor(), provider=_reconcile_provider(), after=after, limit=limit, **query
    )
    apply_form = ReconcileApplyForm(**{name: getattr(form, name).data for name in ("user_id", "kind", "source")})
    return render_template(
        "console/reconcile.html",
        form=form,
        page=page,
        customers=_by_customer(page.mismatches),
        apply_form=apply_form,
        **page_links("console.reconcile", page, after, scope="reconcile"),
        **_reconcile_context(),
    )


@bp.post("/reconcile")
@access.requires(Permission.APPLY_RECONCILE)
def reconcile_apply():
    """Apply the fixes of the selected customers (or of all the filters match) after a confirmation (admin).

    The confirmation lists every fix and pins the customers' ids: confirmed with a reason, exactly those customers
    are fixed, each compared again under its lock (a fix no longer needed is not applied).
    """
    form = ReconcileApplyForm()
    back = url_for(
        "console.reconcile", **{name: form[name].data for name in ("user_id", "kind", "source") if form[name].data}
    )
    filters = load_form(ReconcileQuery, form)
    pinned = request.form.getlist("user_ids") if form.is_confirmed() else None
    if filters is not None and pinned is not None and reason_given(form):
        data = load_form(ReconcileApplyIn, form, apply=True, user_ids=pinned)
        report = data and submit(form, _apply_fixes, data, not_found_field="user_ids")
        if report:
            flash(_fixed_message(report))
            return redirect(back)
    user_ids = pinned if pinned is not None else _chosen(form)
    if filters is not None and not form.form_errors:
        fixes = _planned_fixes(filters, user_ids)
        if fixes:
            return render_confirmation(
                title=f"Apply {_count(len(fixes), 'fix', 'fixes')} to {_count(len(_by_customer(fixes)), 'customer')}",
                items=[f"{m.user_id}: {_fix_text(m)} ({m.why})" for m in fixes],
                action=url_for("console.reconcile"),
                cancel=back,
                form=form,
                pinned=[] if pinned is not None else [("user_ids", user_id) for user_id in _by_customer(fixes)],
            )
        form.form_errors.append("Nothing to fix for these customers; nothing was changed.")
    flash(error_summary(form), "error")
    return redirect(back)


def _reconcile_context() -> dict[str, Any]:
    """`provider_source`: whether the provider may be compared with (PLANS_PROVIDER=stripe), so the filter shows."""
    return {"provider_source": current_app.config["PLANS_PROVIDER"] == "stripe"}


def _reconcile_provider() -> reconcile.SubscriptionProvider | None:
    return reconcile.configured_provider(current_app.config)


def _apply_fixes(data: dict[str, Any]) -> reconcile.ApplyReport:
    data.pop("apply")
    return reconcile.apply_fixes(**data, provider=_reconcile_provider(), actor=current_actor(), now=clock.utcnow())


def _chosen(form: ReconcileApplyForm) -> list[str] | None:
    """The customers the list's checkboxes selected, or None for every one the filters match ("Apply all")."""
    if form.scope.data == "all":
        return None
    selected = list(dict.fromkeys(request.form.getlist("selected")))
    if not selected:
        form.form_errors.append("Select the customers to fix, or apply all.")
    return selected


def _planned_fixes(filters: dict[str, Any], user_ids: list[str] | None) -> list[reconcile.Mismatch]:
    """The fixes applying would make now: to `user_ids`, or to every customer with a mismatch the filters match.

    A customer's fixes are applied together, so all of them are listed, whatever `kind` the list was filtered by.
    Gathers at most MAX_APPLY_USER_IDS customers (one apply's worth).
    """
    actor, provider, source = current_actor(), _reconcile_provider(), filters["source"]
    if user_ids is not None:
        pages = (
            reconcile.find_mismatches(actor=actor, source=source, provider=provider, user_id=user_id, limit=MAX_LIMIT)
            for user_id in user_ids[: reconcile.MAX_APPLY_USER_IDS]
        )
        return [m for page in pages for m in page.mismatches if m.fix is not None]
    fixes, after, kind = [], None, filters.get("kind")
    while True:
        page = reconcile.find_mismatches(
            actor=actor, source=source, provider=provider, user_id=filters.get("user_id"), after=after, limit=MAX_LIMIT
        )
        fixes += [m for m in page.mismatches if m.fix is not None]
        after = page.next_cursor
        if after is None or len(_by_customer(fixes)) >= reconcile.MAX_APPLY_USER_IDS:
            break
    grouped = _by_customer(fixes).items()
    wanted = [user_id for user_id, found in grouped if kind is None or any(m.kind is kind for m in found)]
    wanted = set(wanted[: reconcile.MAX_APPLY_USER_IDS])
    return [m for m in fixes if m.user_id in wanted]


def _by_customer(mismatches: list[reconcile.Mismatch]) -> dict[str, list[reconcile.Mismatch]]:
    """Mismatches grouped by customer, in the order they came."""
    grouped: dict[str, list[reconcile.Mismatch]] = {}
    for mismatch in mismatches:
        grouped.setdefault(mismatch.user_id, []).append(mismatch)
    return grouped


def _fix_text(mismatch: reconcile.Mismatch) -> str:
    """`status: active → past_due`, or for a missing row `subscription: none → plan pro, status active, ...`."""
    if mismatch.kind is reconcile.Kind.MISSING_SUBSCRIPTION:
        return f"subscription: none → {display.shown(mismatch.fix)}"
    return display.change_message({mismatch.kind.value: mismatch.actual}, mismatch.fix)


FIXES_SHOWN = 10  # customers named in the success message; more are summed up


def _fixed_message(report: reconcile.ApplyReport) -> str:
    """`Fixed 2 mismatches: user-a: status: active → past_due; ...` (the first customers, the rest counted)."""
    fixed = _by_customer([m for m in report.mismatches if m.fix is not None])
    lines = [f"{user_id}: {', '.join(_fix_text(m) for m in found)}" for user_id, found in fixed.items()]
    more = len(lines) - FIXES_SHOWN
    shown = lines[:FIXES_SHOWN] + ([f"and {_count(more, 'more customer')}"] if more > 0 else [])
    return f"Fixed {_count(report.fixed, 'mismatch', 'mismatches')}" + (": " + "; ".join(shown) if shown else "") + "."


def _count(number: int, one: str, many: str | None = None) -> str:
    return f"{number} {one if number == 1 else (many or one + 's')}"
