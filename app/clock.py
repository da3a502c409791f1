"""The one source of "now": aware UTC. Tests replace `utcnow` to control time."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current instant, aware, in UTC."""
    return datetime.now(UTC)
