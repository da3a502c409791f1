from __future__ import annotations

from flask import request
from flask_smorest import Blueprint

from app import input_guard
from app.auth import authenticate
from app.services.actor import Channel

bp = Blueprint(
    "api",
    __name__,
    url_prefix="/v1/admin/billing",
    description="Billing operations for tooling. Every call needs an `X-Admin-Key` header.",
)
_BODY_METHODS = ("POST", "PUT", "PATCH")


@bp.before_request
def check_request():
    """Authenticate every request (a caller without a key learns nothing of its input), then check its input."""
    authenticate(Channel.API)
    input_guard.check_request_text()
    if request.method in _BODY_METHODS:
        input_guard.json_object_body()


input_guard.after_authentication(bp)
