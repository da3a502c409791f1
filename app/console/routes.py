"""Console pages: parse, call one service, render (or flash and redirect)."""

from __future__ import annotations

import flask
from flask import flash, redirect, render_template, request, url_for
from werkzeug.exceptions import TooManyRequests

from app import clock
from app.audit_csv import csv_response
from app.auth import actor_for, current_actor
from app.console import access, display
from app.console.forms import AuditFilterForm, LoginForm, add_errors, load_form
from app.schemas.audit import AuditQuery
from app.schemas.common import encode_cursor
from app.services import audit, customers, dashboard
from app.services.actor import Channel
from app.services.errors import AuthRequired

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
    kept = {name: value for name, value in request.args.items() if name not in ("cursor", "format") and value}
    return render_template(
        "console/audit.html",
        form=form,
        actions=audit.ACTIONS,
        page=page,
        next_url=page.next_cursor
        and url_for("console.audit_log", **kept, cursor=encode_cursor(page.next_cursor, scope="audit")),
        first_url=after and url_for("console.audit_log", **kept),
        csv_url=url_for("console.audit_log", **kept, format="csv"),
    )
