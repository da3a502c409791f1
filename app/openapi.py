"""flask-smorest's Api, with problem+json errors and the X-Admin-Key security scheme."""

from __future__ import annotations

import http

from flask_smorest import Api
from flask_smorest.utils import prepare_response

from app.schemas.problem import ProblemSchema

PROBLEM_JSON = "application/problem+json"
SECURITY_SCHEME = "AdminKey"


def problem_response(description: str) -> dict:
    """`alt_response` arguments documenting an error status with the problem+json body."""
    return {"schema": ProblemSchema, "content_type": PROBLEM_JSON, "description": description}


class RestApi(Api):
    """Documents errors as problem+json; `app.errors` renders them for the whole app."""

    ERROR_SCHEMA = ProblemSchema

    def init_app(self, app, *, spec_kwargs=None):
        super().init_app(app, spec_kwargs=spec_kwargs)
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
