from __future__ import annotations

from flask import request
from flask_smorest import Blueprint

from app import input_guard
from app.api import idempotency
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
    """Authenticate every request (a caller without a key learns nothing of its input), check its input, then
    honour an Idempotency-Key."""
    authenticate(Channel.API)
    input_guard.check_request_text()
    if request.method not in _BODY_METHODS:
        return None
    input_guard.json_object_body()
    return idempotency.begin()


input_guard.after_authentication(bp)
bp.after_request(idempotency.finish)
