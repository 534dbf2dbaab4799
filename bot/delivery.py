"""The port every platform's sender implements, and the errors it may raise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.messages import Message


@dataclass(frozen=True)
class Outgoing:
    target: str
    message: Message
    # The outbox row's unique key: Matrix transaction id, Slack message metadata.
    key: str
    ephemeral_to: str | None = None
    message_key: str | None = None


class DeliveryError(Exception):
    pass


class RateLimited(DeliveryError):
    """The platform asked us to wait (Slack 429 Retry-After, Matrix M_LIMIT_EXCEEDED)."""

    def __init__(self, retry_after: float, detail: str = "rate limited") -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class TemporaryFailure(DeliveryError):
    """Worth trying again later: timeouts, 5xx, a dropped connection."""


class PermanentFailure(DeliveryError):
    """Trying again can't help: unknown channel, message too long, refused content."""


class HoldDelivery(DeliveryError):
    """The destination can't take messages until a person fixes something (a revoked
    installation): keep the message, don't count attempts, tell the analysts."""


class Sender(Protocol):
    platform: str

    def min_interval(self, target: str) -> float:
        """Seconds to leave between two sends to one target (the platform's pace)."""
        ...

    def rate_scope(self, target: str, op: str, *, ephemeral: bool) -> str:
        """What shares a "rate limited" answer with this send (``op``: post, edit or
        delete): the target alone, or everything the platform counts against the same
        limit (a Slack workspace's calls to one method; a Matrix account's messages). A
        429 holds back every send with the same scope until its Retry-After."""
        ...

    async def post(self, out: Outgoing) -> str:
        """Send a new message; return the platform's reference for later edits."""
        ...

    async def edit(self, out: Outgoing, ref: str) -> None: ...

    async def delete(self, out: Outgoing, ref: str) -> None: ...

    async def find_sent(self, out: Outgoing) -> str | None:
        """After an attempt whose outcome is unknown (the process died mid-send), the ref of
        the message if it did arrive, so it is not sent twice. None if it can't tell."""
        ...
