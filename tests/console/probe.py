"""A test-only console page built from the shared form machinery, as the override and grace pages will be.

`/admin/probe/set` changes a number with post/redirect/get; `/admin/probe/bulk` asks for a confirmation first.
The "service" keeps its state in `STATE` and refuses inputs the way real services do.
"""

from __future__ import annotations

from datetime import datetime

import flask
from flask import flash, redirect, render_template_string, url_for
from marshmallow import Schema, fields, validate
from wtforms import StringField

from app import clock
from app.auth import current_actor
from app.console import access, display
from app.console.forms import ConfirmableForm, load_form, render_confirmation, submit
from app.services.actor import Actor
from app.services.errors import InvalidInput, NotFound, RuleViolation
from app.services.permissions import Permission, require

bp = flask.Blueprint("console_probe", __name__, url_prefix="/admin/probe")
bp.before_request(access.require_session)
STATE: dict[str, int] = {}


class SetIn(Schema):
    user_id = fields.String(required=True, validate=validate.Length(max=64))
    credits_delta = fields.Integer(required=True)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class SetForm(ConfirmableForm):
    user_id = StringField("User id")
    credits_delta = StringField("Credits to add")
    reason = StringField("Reason")


def add_credits(user_id: str, credits_delta: int, reason: str, *, actor: Actor, now: datetime) -> tuple[dict, dict]:
    """A stand-in service: refuses an unknown user, a bad value, and a balance below zero."""
    require(actor, Permission.OVERRIDE_ENTITLEMENTS)
    if user_id not in STATE:
        raise NotFound(f"No customer has the user id {user_id!r}.")
    if credits_delta == 0:
        raise InvalidInput("credits_delta", "must change the balance")
    if STATE[user_id] + credits_delta < 0:
        raise RuleViolation(f"Credits would go below zero ({STATE[user_id]} + {credits_delta}).")
    before = {"credits": STATE[user_id]}
    STATE[user_id] += credits_delta
    return before, {"credits": STATE[user_id]}


PAGE = """{% extends "console/base.html" %}{% from "console/_macros.html" import field, form_errors %}
{% block content %}<form method="post">{{ form.csrf_token }}{{ form_errors(form) }}
{{ field(form.user_id) }}{{ field(form.credits_delta) }}{{ field(form.reason) }}<button>Save</button></form>
{% endblock %}"""


def _change(form: SetForm):
    if not form.validate_on_submit() or (data := load_form(SetIn, form)) is None:
        return None
    return submit(form, add_credits, **data, actor=current_actor(), now=clock.utcnow())


@bp.route("/set", methods=["GET", "POST"])
def set_credits():
    form = SetForm()
    if result := _change(form):
        before, after = result
        flash(f"{form.user_id.data}: {display.change_message(before, after)}.")
        return redirect(url_for("console_probe.set_credits"))
    return render_template_string(PAGE, form=form)


@bp.route("/bulk", methods=["GET", "POST"])
def bulk():
    form = SetForm()
    if form.validate_on_submit() and not form.is_confirmed() and load_form(SetIn, form):
        return render_confirmation(
            title="Add credits",
            items=[f"add {form.credits_delta.data} credits to {form.user_id.data}"],
            action=url_for("console_probe.bulk"),
            cancel=url_for("console_probe.set_credits"),
            form=form,
        )
    if result := _change(form):
        flash(display.change_message(*result))
        return redirect(url_for("console_probe.set_credits"))
    return render_template_string(PAGE, form=form)
