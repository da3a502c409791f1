"""Console forms, and the machinery every form view shares.

A view validates the form (CSRF), runs the JSON API's marshmallow schema over it with `load_form` (so both
faces accept exactly the same input), calls one service through `submit` (a refusal about the input becomes
an inline error; nothing was changed), then flashes and redirects. Bulk actions first show `confirm.html`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import render_template, request
from flask_wtf import FlaskForm
from marshmallow import Schema, ValidationError
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import InputRequired
from wtforms.widgets import NumberInput

from app.services.errors import Conflict, InvalidInput, NotFound, RuleViolation

T = TypeVar("T")
FORM_LEVEL = "_schema"  # marshmallow's name for a message about the whole input
CONFIRMED = "yes"


def load_form(schema: type[Schema], form: FlaskForm, **extra: Any) -> dict[str, Any] | None:
    """Run `schema` over the form's fields (and `extra` inputs not on the form, such as a cursor).

    Returns the loaded data, or None after copying the schema's messages onto the fields they name.
    Empty fields are left out, so the schema's defaults and `required` apply as they do to a JSON body.
    """
    instance = schema()
    raw = {name: field.data for name, field in form._fields.items() if name in instance.fields}
    raw |= extra
    try:
        return instance.load({name: value for name, value in raw.items() if value not in (None, "")})
    except ValidationError as error:
        add_errors(form, error.normalized_messages())
        return None


def submit(
    form: FlaskForm, service: Callable[..., T], /, *args: Any, not_found_field: str = "user_id", **kwargs
) -> T | None:
    """Call `service`; turn a refusal of the input into inline errors on `form` and return None.

    Services change nothing when they refuse (their unit of work rolls back). An unknown thing (NotFound) is
    reported on `not_found_field`; a broken rule or a conflicting change on the form as a whole.
    Permission refusals are not caught: they render the 403 page.
    """
    try:
        return service(*args, **kwargs)
    except InvalidInput as error:
        add_errors(form, error.errors)
    except NotFound as error:
        add_errors(form, {not_found_field: [error.detail]})
    except (RuleViolation, Conflict) as error:
        add_errors(form, {FORM_LEVEL: [error.detail]})
    return None


def add_errors(form: FlaskForm, messages: Mapping[str, Any]) -> None:
    """Show `messages` under the fields they name; the rest (or `_schema`) at the top of the form."""
    for name, message in messages.items():
        texts = _texts(message)
        field = form._fields.get(name)
        if field is not None and name != "csrf_token":
            field.errors = [*field.errors, *texts]
        else:
            prefix = "" if name == FORM_LEVEL else f"{name}: "
            form.form_errors = [*form.form_errors, *(prefix + text for text in texts)]


def _texts(message: Any) -> list[str]:
    if isinstance(message, str):
        return [message]
    if isinstance(message, Mapping):
        return [f"{key}: {text}" for key, value in message.items() for text in _texts(value)]
    return [text for item in message for text in _texts(item)]


def assume_utc(value: str | None) -> str | None:
    """A typed date-time without an offset means UTC (the console shows UTC everywhere); others pass as typed."""
    if not value:
        return value
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return value  # the schema says what is wrong with it
    return parsed.replace(tzinfo=UTC).isoformat() if parsed.tzinfo is None else value.strip()


class ConfirmableForm(FlaskForm):
    """A form whose POST first shows what will happen, then runs when the confirm button sends it again."""

    confirmed = HiddenField()

    def is_confirmed(self) -> bool:
        return self.confirmed.data == CONFIRMED


def render_confirmation(*, title: str, items: Iterable[str], action: str, cancel: str, form: FlaskForm) -> str:
    """The confirmation step: what will happen, and a button posting the same inputs again, confirmed."""
    carried = [
        (name, value)
        for name, values in request.form.lists()
        if name not in ("csrf_token", "confirmed")
        for value in values
    ]
    return render_template(
        "console/confirm.html",
        title=title,
        items=list(items),
        action=action,
        cancel=cancel,
        form=form,
        carried=carried,
        confirmed=CONFIRMED,
    )


class LoginForm(FlaskForm):
    admin_key = PasswordField(
        "Admin key", validators=[InputRequired()], render_kw={"autocomplete": "current-password", "autofocus": True}
    )
    next = HiddenField()


class AuditFilterForm(FlaskForm):
    """The audit log's filters: the fields of the API's `AuditQuery`, sent as a GET query."""

    class Meta:
        csrf = False  # a GET that changes nothing

    user_id = StringField("User id")
    actor = StringField("Actor")
    action = StringField("Action", render_kw={"list": "audit-actions"})
    since = StringField("Since (UTC)", filters=[assume_utc], render_kw={"placeholder": "2026-11-29 00:00"})
    until = StringField("Until (UTC)", filters=[assume_utc], render_kw={"placeholder": "2026-11-30 00:00"})
    limit = StringField("Per page", widget=NumberInput(min=1, max=200), render_kw={"placeholder": "50"})
