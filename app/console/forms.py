"""Console forms, and the machinery every form view shares.

A view validates the form (CSRF), runs the JSON API's marshmallow schema over it with `load_form` (so both
faces accept exactly the same input), calls one service through `submit` (a refusal about the input becomes
an inline error; nothing was changed), then flashes and redirects. Bulk actions first show `confirm.html`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import render_template, request
from flask_wtf import FlaskForm
from marshmallow import Schema, ValidationError, fields, validate
from wtforms import HiddenField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired
from wtforms.widgets import NumberInput

from app.models.events import EventStatus
from app.schemas.common import REASON
from app.schemas.entitlements import OverrideIn
from app.schemas.grace import GraceResetIn
from app.services import subscriptions
from app.services.actor import Actor
from app.services.errors import Conflict, InvalidInput, NotFound, RuleViolation
from app.services.reconcile import Kind, Source
from app.services.subscriptions import SubscriptionView

T = TypeVar("T")
FORM_LEVEL = "_schema"  # marshmallow's name for a message about the whole input
CONFIRMED = "yes"
ASKED_ON_CONFIRMATION = ("reason",)  # fields the confirmation page shows rather than carries


def load_form(schema: type[Schema], form: FlaskForm, **extra: Any) -> dict[str, Any] | None:
    """Run `schema` over the form's fields (and `extra` inputs not on the form, such as a cursor).

    Returns the loaded data, or None after copying the schema's messages onto the fields they name.
    Empty fields are left out, so the schema's defaults and `required` apply as they do to a JSON body.
    """
    instance = console_messages(schema())
    raw = {name: field.data for name, field in form._fields.items() if name in instance.fields}
    raw |= extra
    try:
        return instance.load({name: value for name, value in raw.items() if value not in (None, "")})
    except ValidationError as error:
        add_errors(form, error.normalized_messages())
        return None


# What the console says where marshmallow's defaults ("Missing data for required field.") would read like a parser.
# The API keeps marshmallow's messages: these replace them only on the copies of the fields a console schema makes.
REQUIRED_MESSAGES = {
    "reason": "Say why: the reason is kept in the audit log.",
    "user_id": "Enter a user id.",
    "days": "Enter a number of days, from 1 to 90.",
}
REQUIRED_MESSAGE = "Fill in this field."
INVALID_MESSAGES = {  # by field class, most specific first
    fields.Integer: "Enter a whole number, e.g. 500.",
    fields.DateTime: "Enter a date and time in UTC, e.g. 2027-01-31 00:00.",
}


def console_messages(instance: Schema) -> Schema:
    """`instance` (a fresh schema: its fields are its own copies) with the console's wording of its errors."""
    for name, field in instance.fields.items():
        field.error_messages = {**field.error_messages, "required": REQUIRED_MESSAGES.get(name, REQUIRED_MESSAGE)}
        invalid = next((text for kind, text in INVALID_MESSAGES.items() if isinstance(field, kind)), None)
        if invalid:
            field.error_messages["invalid"] = invalid
    return instance


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


def reason_given(form: FlaskForm) -> bool:
    """Whether the form says why (every console change does); if not, the error is under its `reason` field."""
    return load_form(ReasonRequiredIn, form) is not None


def error_summary(form: FlaskForm) -> str:
    """Every message on `form` in one line, for a flash where the form itself is not shown again."""
    field_messages = [message for field in form for message in field.errors]
    return " ".join([*form.form_errors, *field_messages])


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


def render_confirmation(
    *,
    title: str,
    items: Iterable[str],
    action: str,
    cancel: str,
    form: FlaskForm,
    pinned: Iterable[tuple[str, str]] = (),
) -> str:
    """The confirmation step: what will happen, and a button posting the same inputs again, confirmed.

    `pinned` adds inputs to the confirmed POST, e.g. the ids the preview listed, so that exactly those run.
    The form's `reason`, if it has one, is asked on this page (with its error, when a confirmation lacked it).
    """
    carried = [
        (name, value)
        for name, values in request.form.lists()
        if name not in ("csrf_token", "confirmed", *ASKED_ON_CONFIRMATION)
        for value in values
    ]
    carried += pinned
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
        "Admin key",
        validators=[InputRequired("Enter your admin key.")],
        render_kw={"autocomplete": "current-password", "autofocus": True},
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


def strip(value: str | None) -> str | None:
    """Surrounding blanks are not part of a value (a reason of spaces is no reason)."""
    return value.strip() if isinstance(value, str) else value


def schema_hints(schema: type[Schema]) -> dict[str, str]:
    """The API's description of each field, shown under the console's input: both faces explain it alike."""
    return {name: text for name, field in schema().fields.items() if (text := field.metadata.get("description"))}


class WholeNumberField(StringField):
    """A number input: whole-number text becomes an int, empty None, anything else reaches the API's schema as
    typed so the schema decides, as it would for the API (the console words its message: "Enter a whole number")."""

    widget = NumberInput()

    def process_formdata(self, valuelist: list[Any]) -> None:
        super().process_formdata(valuelist)
        text = (self.data or "").strip()
        try:
            self.data = int(text) if text else None
        except ValueError:
            self.data = text


class _ReasonRequired(Schema):
    """Every console change says why (PRODUCT.md), though the API leaves `reason` optional."""

    reason = fields.String(required=True, validate=[REASON, validate.Length(min=1)])


class ReasonRequiredIn(_ReasonRequired):
    """Just the reason: checks a confirmation before anything runs."""


class ConsoleOverrideIn(_ReasonRequired, OverrideIn):
    """The API's override input with `reason` required."""


class ConsoleGraceResetIn(_ReasonRequired, GraceResetIn):
    """The API's grace reset input with `reason` required."""


def reason_field() -> TextAreaField:
    return TextAreaField(
        "Reason", filters=[strip], render_kw={"rows": 2, "placeholder": "Why, in a sentence the next agent understands"}
    )


PREVIEW = "preview"


class ChangeForm(FlaskForm):
    """A change to one customer. The button pressed is `action`: "preview" computes the change and writes
    nothing; any other (Apply, or a POST without it) applies it."""

    user_id = StringField("User id", filters=[strip], render_kw={"autocomplete": "off"})
    reason = reason_field()
    action = StringField()  # the button pressed, not an input of its own

    def previewing(self) -> bool:
        return self.action.data == PREVIEW


@dataclass(frozen=True)
class CustomerState:
    """What a change form shows beside itself: the named customer's subscription now, or why there is none."""

    user_id: str
    subscription: SubscriptionView | None  # with its active grace period
    missing: str | None  # "No customer has the user id 'x'." or "User 'x' has no subscription."


def customer_state(user_id: str | None, *, actor: Actor) -> CustomerState | None:
    """The state of the customer the form names (None while it names nobody), read as the customer page does."""
    if not user_id:
        return None
    try:
        return CustomerState(user_id, subscriptions.get_subscription(user_id, actor=actor), None)
    except NotFound as error:
        return CustomerState(user_id, None, error.detail)


class OverrideForm(ChangeForm):
    """The override's fields (`OverrideIn`); empty ones stay as they are."""

    credits = WholeNumberField("Credits", widget=NumberInput(min=0))
    credits_delta = WholeNumberField("Credits delta")
    # The plan is checked by the service (an active plan), so an unknown code gets the API's message.
    plan = SelectField("Plan", validate_choice=False)
    valid_until = StringField("Valid until (UTC)", filters=[assume_utc], render_kw={"placeholder": "2027-01-31 00:00"})

    def offer_plans(self, codes: Iterable[str]) -> None:
        """List `codes` (the active plans) in the plan select, after "keep the current plan"."""
        self.plan.choices = [SelectChoice("", "keep the current plan"), *map(SelectChoice, codes)]


class GraceResetForm(ChangeForm):
    """The grace reset's fields (`GraceResetIn`)."""

    days = WholeNumberField("Days", widget=NumberInput(min=1, max=90))


class EventFilterForm(FlaskForm):
    """The events list's filters: the fields of the API's `EventsQuery`, sent as a GET query."""

    class Meta:
        csrf = False  # a GET that changes nothing

    status = SelectField("Status", choices=[SelectChoice("", "any"), *map(SelectChoice, EventStatus)])
    type = StringField("Type", filters=[strip], render_kw={"placeholder": "invoice.payment_failed"})
    user_id = StringField("User id", filters=[strip])
    since = StringField("Since (UTC)", filters=[assume_utc], render_kw={"placeholder": "2026-11-29 00:00"})
    until = StringField("Until (UTC)", filters=[assume_utc], render_kw={"placeholder": "2026-11-30 00:00"})
    limit = StringField("Per page", widget=NumberInput(min=1, max=200), render_kw={"placeholder": "50"})


class ReplayForm(ConfirmableForm):
    """Replay one event (`event_id`) or the events matching the list's filters, posted as hidden fields."""

    event_id = HiddenField()
    status = HiddenField()
    type = HiddenField()
    user_id = HiddenField()
    since = HiddenField()
    until = HiddenField()
    reason = reason_field()


class PlansSyncForm(ConfirmableForm):
    """The sync button: the first POST shows the dry-run diff, the confirmed one (with a reason) applies it."""

    reason = reason_field()


class ReconcileFilterForm(FlaskForm):
    """The reconcile preview's filters: the fields of the API's `ReconcileQuery`, sent as a GET query."""

    class Meta:
        csrf = False  # a GET that changes nothing

    user_id = StringField("User id", filters=[strip])
    kind = SelectField("Kind", choices=[SelectChoice("", "any"), *map(SelectChoice, Kind)])
    source = SelectField("Source", choices=[*map(SelectChoice, Source)])
    limit = StringField("Per page", widget=NumberInput(min=1, max=200), render_kw={"placeholder": "50"})


class ReconcileApplyForm(ConfirmableForm):
    """Apply fixes: the `selected` customers (checkboxes) or all those the filters match (`scope`), confirmed with
    a reason. The confirmation pins the customers it listed as `user_ids`."""

    scope = StringField()  # the button pressed: "selected" or "all" (not a hidden input of its own)
    user_id = HiddenField()
    kind = HiddenField()
    source = HiddenField()
    reason = reason_field()
