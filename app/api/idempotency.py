"""`Idempotency-Key` on every admin POST: the blueprint's request hooks call these two functions."""

from __future__ import annotations

from flask import Response, g, jsonify, request

from app import clock
from app.auth import current_actor
from app.errors import problem
from app.openapi import PROBLEM_JSON
from app.services import idempotency

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"


def begin() -> Response | None:
    """Claim the request's key, or answer with the first request's stored response; None lets the request run."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not idempotency.is_valid_key(key):
        return problem(
            400,
            "invalid_parameters",
            f"{HEADER} must be 1-255 printable ASCII characters without spaces, e.g. a UUID.",
            {HEADER: ["Not a valid idempotency key."]},
        )
    admin_key_id = current_actor().key_id
    signature = idempotency.fingerprint(request.method, request.path, request.get_json())
    stored = idempotency.claim(admin_key_id, key, signature, now=clock.utcnow())
    if stored is None:
        g.idempotency_claim = (admin_key_id, key)
        return None
    response = jsonify(stored.body)
    response.status_code = stored.status
    if stored.status >= 400:
        response.mimetype = PROBLEM_JSON
    response.headers[REPLAYED_HEADER] = "true"
    return response


def finish(response: Response) -> Response:
    """Store the answer to a claimed key (or release the key when the answer is not to be replayed)."""
    claim = g.pop("idempotency_claim", None)
    if claim is not None:
        admin_key_id, key = claim
        body = response.get_json(silent=True) if response.is_json else None
        idempotency.finish(admin_key_id, key, response.status_code, body, now=clock.utcnow())
    return response
