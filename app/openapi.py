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


class RestApi(Api):
    """Documents errors as problem+json; `app.errors` renders them for the whole app."""

    ERROR_SCHEMA = ProblemSchema

    def init_app(self, app, *, spec_kwargs=None):
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
