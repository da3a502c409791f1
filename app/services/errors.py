"""Domain errors. Each carries a stable `code`; `app.errors` maps the class to an HTTP status."""

from __future__ import annotations


class DomainError(Exception):
    """A refusal the caller can explain to the user."""

    code = "domain_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    code = "not_found"


class AuthRequired(DomainError):
    """No credential, or one that is unknown or revoked."""

    code = "auth_required"


class PermissionDenied(DomainError):
    """The actor's role lacks the permission."""

    code = "forbidden"


class InvalidInput(DomainError):
    """A value is wrong on its own: `errors` maps each field to its messages."""

    code = "validation_failed"

    def __init__(self, field: str, message: str, *also: str) -> None:
        """`message` about `field`, and about each field of `also` (e.g. two fields that exclude each other)."""
        super().__init__(f"{', '.join((field, *also))}: {message}")
        self.errors = {name: [message] for name in (field, *also)}


class InvalidParameters(InvalidInput):
    """A path, query or header value is unusable (400, where a body field is 422)."""

    code = "invalid_parameters"


class InvalidJSON(DomainError):
    """The body is not a JSON object the service can read."""

    code = "invalid_json"


class RuleViolation(DomainError):
    """A valid change that breaks a rule of the current state (e.g. credits below zero)."""

    code = "rule_violation"


class Conflict(DomainError):
    """The state changed underneath the request, or a unique thing exists already."""

    code = "conflict"


class InvalidSignature(DomainError):
    """A webhook whose `Stripe-Signature` is missing, malformed, stale or matches no configured secret."""

    code = "invalid_signature"


class HandlerError(DomainError):
    """A webhook event cannot be applied yet (e.g. its customer is unknown); it is kept, retried and replayable."""

    code = "handler_error"


class IdempotencyKeyReused(DomainError):
    """An Idempotency-Key sent again with a different request."""

    code = "idempotency_key_reused"


class IdempotencyInProgress(DomainError):
    """An Idempotency-Key whose first request is still running."""

    code = "idempotency_in_progress"


class ProviderUnavailable(DomainError):
    """The plan provider (catalog file or Stripe) could not be read, or offers plans that cannot be stored;
    nothing was changed."""

    code = "provider_unavailable"
