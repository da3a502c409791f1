"""The admin console: server-rendered pages over the same services as the JSON API."""

from app.console.routes import bp

__all__ = ["bp"]
