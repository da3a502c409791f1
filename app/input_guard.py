"""Every request's text is checked once, here, against the input-safety rule of `app.services.inputs`.

Path, query, form and header values are checked before any view runs (400 `invalid_parameters`), and every
JSON body is parsed strictly (400 `invalid_json`, or 422 `validation_failed` naming the field). Blueprints that
authenticate first (the admin API: a caller without a key learns nothing of its input) call
`check_request_text` themselves after authentication, and are registered with `after_authentication`.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from flask.json.provider import DefaultJSONProvider
from flask_smorest import Blueprint
from werkzeug.exceptions import UnsupportedMediaType

from app.services.errors import InvalidInput, InvalidJSON, InvalidParameters
from app.services.inputs import UnsafeValue, loads_json, printable, text_problem

_AFTER_AUTHENTICATION: set[str] = set()


class SafeJSONProvider(DefaultJSONProvider):
    """`request.get_json()` everywhere parses with the strict rule (a refusal is a 400 like any bad JSON)."""

    sort_keys = False  # keep fields in the documented order

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads_json(s)


def init_app(app: Flask) -> None:
    app.json = SafeJSONProvider(app)
    app.before_request(_check_unless_deferred)


def after_authentication(bp: Blueprint) -> None:
    """Declare that `bp` authenticates first and then calls `check_request_text` itself."""
    _AFTER_AUTHENTICATION.add(bp.name)


def _check_unless_deferred() -> None:
    if request.blueprint not in _AFTER_AUTHENTICATION:
        check_request_text()


def check_request_text() -> None:
    """Refuse a path, query, form or header value the database cannot store (400 naming it)."""
    _check("path", request.path)
    for source in (request.args, request.form):
        for name, values in source.lists():
            _check(printable(name), name)
            for value in values:
                _check(printable(name), value)
    for name, value in request.headers.items():
        _check(f"header {printable(name)}", name + value)


def json_object_body() -> dict[str, Any]:
    """The request's JSON object body: 415 unless sent as JSON, 400 unless an object, 422 naming a bad field."""
    if not request.is_json:
        raise UnsupportedMediaType("Send the body as JSON with Content-Type: application/json.")
    try:
        body = loads_json(request.get_data(cache=True))
    except UnsafeValue as exc:
        raise InvalidInput(exc.field, exc.message) from None
    except ValueError as exc:
        raise InvalidJSON(f"The body is not valid JSON ({exc}).") from None
    if not isinstance(body, dict):
        raise InvalidJSON('The body must be a JSON object, e.g. {"user_id": "user-alice"}.')
    return body


def _check(field: str, value: str) -> None:
    if problem := text_problem(value):
        raise InvalidParameters(field, problem)
