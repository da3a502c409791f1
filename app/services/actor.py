"""Who is acting, through which channel, from where: passed to every service."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from app.models.keys import Role


class Channel(enum.StrEnum):
    API = "api"
    CONSOLE = "console"
    CLI = "cli"
    WORKER = "worker"


@dataclass(frozen=True)
class Actor:
    """The author of a change, as the audit log names it."""

    name: str
    role: Role
    channel: Channel
    request_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    key_id: int | None = None

    @classmethod
    def cli(cls, name: str) -> Actor:
        """An operator at the command line (full rights: they hold the server)."""
        return cls(name=name, role=Role.ADMIN, channel=Channel.CLI)

    @classmethod
    def worker(cls) -> Actor:
        return cls(name="worker", role=Role.ADMIN, channel=Channel.WORKER)

    @classmethod
    def webhook(cls, event_id: str, channel: Channel) -> Actor:
        """A webhook handler applying provider event `event_id` (channel `api` on receive, `worker` on retry)."""
        return cls(name=f"webhook:{event_id}", role=Role.ADMIN, channel=channel)

    def context(self) -> dict[str, Any]:
        """The audit row's `context`."""
        return {
            "channel": self.channel.value,
            "request_id": self.request_id,
            "ip": self.ip,
            "user_agent": self.user_agent,
        }
