"""What every service needs: the database, the policy in force, the clock, and a way to
wake the delivery worker once something was queued."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.clock import Clock
from bot.policy import Policy
from storage.db import Database


class PolicyHolder:
    """The policy in force. Replaced whole, never mutated: a reload is atomic."""

    def __init__(self, policy: Policy, source: str) -> None:
        self.policy = policy
        self.source = source
        self._listeners: list[Callable[[Policy], None]] = []

    def replace(self, policy: Policy) -> None:
        self.policy = policy
        for listener in self._listeners:
            listener(policy)

    def on_change(self, listener: Callable[[Policy], None]) -> None:
        """Be told of every reload (the scheduler re-declares digest jobs)."""
        self._listeners.append(listener)


@dataclass
class Core:
    db: Database
    policies: PolicyHolder
    clock: Clock
    wake_outbox: Callable[[], None] = field(default=lambda: None)

    @property
    def policy(self) -> Policy:
        return self.policies.policy

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; the outbox worker is woken after it commits."""
        async with self.db.transaction() as conn:
            yield conn
        self.wake_outbox()
