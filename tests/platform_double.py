"""A stand-in chat platform for outbox tests: it remembers what it received, can fail on
demand like real platforms do, and can say whether a message with a key already arrived
(as Matrix transaction ids and Slack message metadata allow)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from bot.delivery import DeliveryError, Outgoing


@dataclass
class Received:
    target: str
    text: str
    key: str
    op: str
    at: float


@dataclass
class PlatformDouble:
    platform: str = "console"
    interval: float = 0.0
    remembers_keys: bool = True
    received: list[Received] = field(default_factory=list)
    failures: deque[DeliveryError] = field(default_factory=deque)
    find_sent_calls: int = 0
    # Rate limits shared by every target (as a Matrix account's are), or per target.
    shared_limit: bool = False

    def min_interval(self, target: str) -> float:
        return self.interval

    def rate_scope(self, target: str, op: str, *, ephemeral: bool) -> str:
        return self.platform if self.shared_limit else target

    def fail_next(self, *errors: DeliveryError) -> None:
        self.failures.extend(errors)

    def _maybe_fail(self) -> None:
        if self.failures:
            raise self.failures.popleft()

    async def post(self, out: Outgoing) -> str:
        self._maybe_fail()
        self.received.append(
            Received(
                out.target, out.message.text, out.key, "post", asyncio.get_running_loop().time()
            )
        )
        return f"ref-{len(self.received)}"

    async def edit(self, out: Outgoing, ref: str) -> None:
        self._maybe_fail()
        self.received.append(
            Received(
                out.target,
                out.message.text,
                out.key,
                f"edit {ref}",
                asyncio.get_running_loop().time(),
            )
        )

    async def delete(self, out: Outgoing, ref: str) -> None:
        self._maybe_fail()
        self.received.append(
            Received(out.target, "", out.key, f"delete {ref}", asyncio.get_running_loop().time())
        )

    async def find_sent(self, out: Outgoing) -> str | None:
        self.find_sent_calls += 1
        if not self.remembers_keys:
            return None
        for index, item in enumerate(self.received, start=1):
            if item.key == out.key and item.op == "post":
                return f"ref-{index}"
        return None

    def posts(self, target: str | None = None) -> list[Received]:
        return [
            r for r in self.received if r.op == "post" and (target is None or r.target == target)
        ]
