"""flask-smorest's Api, with problem+json errors and the X-Admin-Key security scheme."""

from __future__ import annotations

import http

from apispec import BasePlugin
from flask_smorest import Api
from flask_smorest.utils import prepare_response

from app.schemas.problem import ProblemSchema

PROBLEM_JSON = "application/problem+json"
SECURITY_SCHEME = "AdminKey"
ADMIN_PREFIX = "/v1/admin/billing/"
IDEMPOTENCY_PARAMETER = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]{1,255}$"},
    "description": (
        "Makes a retry safe: the same key with the same request within 24 hours answers the first response again "
        "(with `Idempotent-Replayed: true`) and changes nothing; with another request, 422 "
        "`idempotency_key_reused`; while the first still runs, 409 `idempotency_in_progress`. Scoped per admin key."
    ),
}
REPLAYED_HEADER = {
    "description": "`true` when this is the stored answer to an earlier request with the same Idempotency-Key",
    "schema": {"type": "string", "enum": ["true"]},
}


class IdempotencyPlugin(BasePlugin):
    """Documents `Idempotency-Key` on every admin POST, wherever the route is defined."""

    def operation_helper(self, path=None, operations=None, **kwargs):
        post = (operations or {}).get("post")
        if post is None or not str(path).startswith(ADMIN_PREFIX):
            return
        post.setdefault("parameters", []).append(IDEMPOTENCY_PARAMETER)
        responses = post.setdefault("responses", {})
        responses.setdefault("409", "CONFLICT")
        responses.setdefault("422", "UNPROCESSABLE_ENTITY")
        for status, response in responses.items():
            if str(status).startswith("2") and isinstance(response, dict):
                response.setdefault("headers", {})["Idempotent-Replayed"] = REPLAYED_HEADER


class ProblemResponses(BasePlugin):
    """Document on every operation the problem responses the app's shared checks can give it.

    Every route inherits them, so the document says exactly what a fuzzer (and a client) can get back:
    400 for input the database cannot store (`app.input_guard`) or bad parameters, 403 without a key or the role,
    404 for a path naming something unknown, 413/415/400/422 for a body.
    """

    def operation_helper(self, path=None, operations=None, **kwargs):
        for operation in (operations or {}).values():
            responses = operation.setdefault("responses", {})
            documented = {str(status) for status in responses}  # flask-smorest keys them by int
            for status in _problem_statuses(path or "", operation):
                if str(status.value) not in documented:
                    responses[str(status.value)] = status.name
            for status, response in responses.items():
                if int(status) >= 400 and isinstance(response, dict) and "content" not in response:
                    response["content"] = {PROBLEM_JSON: {"schema": "Problem"}}  # declared with a description only


def _problem_statuses(path: str, operation: dict) -> list[http.HTTPStatus]:
    statuses = []
    if path.startswith("/v1/"):
        statuses.append(http.HTTPStatus.BAD_REQUEST)
        if operation.get("security") != []:
            statuses.append(http.HTTPStatus.FORBIDDEN)
        if "{" in path:
            statuses.append(http.HTTPStatus.NOT_FOUND)
    elif operation.get("parameters"):
        statuses.append(http.HTTPStatus.BAD_REQUEST)
    if "requestBody" in operation:
        statuses += [
            http.HTTPStatus.BAD_REQUEST,
            http.HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            http.HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            http.HTTPStatus.UNPROCESSABLE_ENTITY,
        ]
    return statuses


def problem_response(description: str) -> dict:
    """`alt_response` arguments documenting an error status with the problem+json body."""
    return {"schema": ProblemSchema, "content_type": PROBLEM_JSON, "description": description}


class RestApi(Api):
    """Documents errors as problem+json; `app.errors` renders them for the whole app."""

    ERROR_SCHEMA = ProblemSchema
    # No catch-all `default` response: each operation lists its own statuses (ProblemResponses).
    DEFAULT_ERROR_RESPONSE_NAME = None

    def init_app(self, app, *, spec_kwargs=None):
        spec_kwargs = {**(spec_kwargs or {}), "extra_plugins": [ProblemResponses()]}
        super().init_app(app, spec_kwargs=spec_kwargs)
        plugin = IdempotencyPlugin()
        plugin.init_spec(self.spec)
        self.spec.plugins = (*self.spec.plugins, plugin)
        self.spec.components.security_scheme(
            SECURITY_SCHEME,
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-Admin-Key",
                "description": "An admin key (see `admin-keys create`).",
            },
        )

    def _register_error_handlers(self):
        """Leave error handling to `app.errors`, which serves the console too."""

    def _register_responses(self):
        """Document every error status with the problem+json schema."""
        for status in http.HTTPStatus:
            response = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
                prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Problem details", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, PROBLEM_JSON)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, response, lazy=True)
