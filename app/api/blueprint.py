from __future__ import annotations

from flask import request
from flask_smorest import Blueprint

from app.api import idempotency
from app.auth import authenticate
from app.errors import problem
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
    """Authenticate every request (a caller without a key learns nothing of its body), insist on a JSON object,
    then honour an Idempotency-Key."""
    authenticate(Channel.API)
    if request.method not in _BODY_METHODS:
        return None
    if not request.is_json:
        return problem(415, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json.")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return problem(400, "invalid_json", 'The body must be a JSON object, e.g. {"user_id": "user-alice"}.')
    return idempotency.begin()


bp.after_request(idempotency.finish)
