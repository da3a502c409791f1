"""Every error, rendered in one place: problem+json under /v1, an HTML page elsewhere."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.extensions import db
from app.openapi import PROBLEM_JSON
from app.services.errors import (
    AuthRequired,
    Conflict,
    DomainError,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    InvalidInput,
    NotFound,
    PermissionDenied,
    ProviderUnavailable,
    RuleViolation,
)

log = logging.getLogger(__name__)

DOMAIN_STATUS: dict[type[DomainError], int] = {
    NotFound: 404,
    AuthRequired: 403,
    PermissionDenied: 403,
    InvalidInput: 422,
    RuleViolation: 422,
    Conflict: 409,
    IdempotencyKeyReused: 422,
    IdempotencyInProgress: 409,
    ProviderUnavailable: 502,
}
HTTP_CODES = {
    400: "invalid_parameters",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
}
TITLES = {
    "invalid_json": "Body is not a JSON object",
    "invalid_parameters": "Invalid query parameters",
    "validation_failed": "Validation failed",
    "rule_violation": "Rule violation",
    "auth_required": "Authentication required",
    "forbidden": "Forbidden",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "conflict": "Conflict",
    "payload_too_large": "Payload too large",
    "unsupported_media_type": "Unsupported media type",
    "rate_limited": "Too many requests",
    "idempotency_key_reused": "Idempotency key reused",
    "idempotency_in_progress": "Request in progress",
    "provider_unavailable": "Plan provider unavailable",
    "internal_error": "Internal error",
}


def init_app(app: Flask) -> None:
    app.register_error_handler(DomainError, _domain_error)
    app.register_error_handler(HTTPException, _http_exception)
    app.register_error_handler(Exception, _unexpected)


def problem(status: int, code: str, detail: str, errors: dict[str, Any] | None = None) -> Response:
    """An RFC 9457 problem details response."""
    body: dict[str, Any] = {
        "type": f"urn:billops:problem:{code}",
        "title": TITLES.get(code, HTTPStatus(status).phrase),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_JSON
    return response


def _is_api_request() -> bool:
    return request.path.startswith("/v1/")


def _render(status: int, code: str, detail: str, errors: dict[str, Any] | None = None) -> Response:
    if _is_api_request():
        return problem(status, code, detail, errors)
    title = TITLES.get(code, HTTPStatus(status).phrase)
    return make_response(render_template("errors/error.html", status=status, title=title, detail=detail), status)


def _domain_error(error: DomainError):
    return _render(DOMAIN_STATUS.get(type(error), 400), error.code, error.detail, getattr(error, "errors", None))


def _http_exception(error: HTTPException):
    status = error.code or 500
    messages = (getattr(error, "data", None) or {}).get("messages")
    if messages:  # webargs refused the arguments: the location decides which problem it is
        return _validation_problem(messages)
    if isinstance(error, CSRFError):
        return _render(
            400, "invalid_parameters", "The form expired or was not sent from this site; reload it and try again."
        )
    if status >= 500:
        return _unexpected(error)
    response = _render(status, HTTP_CODES.get(status, HTTPStatus(status).name.lower()), _http_detail(error, status))
    if status == 405:
        response.headers["Allow"] = ", ".join(error.valid_methods or ())
    return response


def _http_detail(error: HTTPException, status: int) -> str:
    if status == 404:
        return f"Nothing is at {request.path}. The API's routes are listed at /docs."
    if status == 405:
        return f"{request.method} is not allowed on {request.path}; use {', '.join(error.valid_methods or ())}."
    if status == 413:
        return f"The body is larger than the limit of {request.max_content_length} bytes."
    return error.description or HTTPStatus(status).description


def _validation_problem(messages: dict[str, Any]):
    if "json" in messages:  # body fields
        return _render(422, "validation_failed", _summary(messages["json"]), _field_errors(messages["json"]))
    fields = {name: errs for location in messages.values() for name, errs in _field_errors(location).items()}
    return _render(400, "invalid_parameters", _summary(fields), fields)


def _field_errors(messages: Any) -> dict[str, Any]:
    """webargs messages by field; a schema-level message (not tied to a field) is reported under `_schema`."""
    return messages if isinstance(messages, dict) else {"_schema": list(messages)}


def _summary(fields: Any) -> str:
    names = ", ".join(sorted(_field_errors(fields))) or "the input"
    return f"Check {names}: see `errors` for what to change."


def _unexpected(error: Exception):
    db.session.rollback()
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=error)
    return _render(
        500,
        "internal_error",
        "Something went wrong on our side; it was logged. Quote the X-Request-ID header if you report it.",
    )
