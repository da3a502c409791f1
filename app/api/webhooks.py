"""POST /v1/billing/webhooks: the payment provider's signed events (public, no admin key, no CSRF)."""

from __future__ import annotations

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from app import clock
from app.openapi import problem_response
from app.schemas.events import ReceiptSchema
from app.services import webhooks

bp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/v1/billing",
    description="Signed events from the payment provider. No admin key: the `Stripe-Signature` header authenticates.",
)
SIGNATURE_HEADER = "Stripe-Signature"
_EVENT_BODY = {
    "required": True,
    "description": "A Stripe event object, signed over its raw bytes (see docs/webhooks.md).",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["id", "type", "created"],
                "properties": {
                    "id": {"type": "string", "example": "evt_1Pgc76B7WZ01zgkWwyRHS12y"},
                    "type": {"type": "string", "example": "invoice.paid"},
                    "created": {"type": "integer", "description": "Unix time, seconds"},
                    "data": {"type": "object", "properties": {"object": {"type": "object"}}},
                },
            }
        }
    },
}
_SIGNATURE_PARAMETER = {
    "in": "header",
    "name": SIGNATURE_HEADER,
    "required": True,
    "schema": {"type": "string"},
    "description": "`t=<unix time>,v1=<hex HMAC-SHA256 of t + '.' + body, keyed with the whsec_ secret>`",
}


@bp.route("/webhooks")
class WebhookReceiver(MethodView):
    @bp.doc(security=[], requestBody=_EVENT_BODY, parameters=[_SIGNATURE_PARAMETER])
    @bp.response(200, ReceiptSchema)
    @bp.alt_response(400, **problem_response("`invalid_signature` or `invalid_json`: nothing was stored"))
    @bp.alt_response(413, **problem_response("The body is over 1 MiB: nothing was stored"))
    def post(self):
        """Receive a signed event: stored, committed, then processed (or, with `WEBHOOK_PROCESSING=queue`, left to
        the workers); 200 once stored, whatever the handler did."""
        config = current_app.config
        return webhooks.receive(
            request.get_data(cache=False),
            request.headers.get(SIGNATURE_HEADER),
            secrets=config["WEBHOOK_SECRETS"],
            grace_days=config["GRACE_PERIOD_DAYS"],
            now=clock.utcnow(),
            queue=config["WEBHOOK_PROCESSING"] == "queue",
        )
