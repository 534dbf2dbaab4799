"""What every service needs: the database, the policy in force, the clock, and a way to
wake the delivery worker once something was queued."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.clock import Clock
from bot.policy import Policy
from storage.db import Database
from storage.outbox_repo import HAND_OVER, HandOver, OutboxRow


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
    # While a delivery worker runs in this process: a hand-over for each transaction
    # (None when none runs), and how the rows it lists reach the worker after the commit.
    outbox_hand_over: Callable[[], HandOver | None] = field(default=lambda: None)
    take_outbox_rows: Callable[[list[OutboxRow]], None] = field(default=lambda rows: None)
    # Rows of a transaction whose commit may or may not have happened: not sent from
    # memory (they may not exist), given back to the queue in case they do.
    give_back_outbox_rows: Callable[[list[OutboxRow]], None] = field(default=lambda rows: None)

    @property
    def policy(self) -> Policy:
        return self.policies.policy

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction. The posts it queues for this process's own worker are
        handed to it after the commit (no claim needed); for anything else it queued the
        worker is woken to claim it."""
        hand_over = self.outbox_hand_over()
        committing = False
        try:
            async with self.db.transaction() as conn:
                if hand_over is None:
                    yield conn
                else:
                    conn.info[HAND_OVER] = hand_over
                    try:
                        yield conn
                    finally:
                        hand_over.open = False  # what follows isn't in this transaction
                        with contextlib.suppress(Exception):  # a broken one isn't reused
                            del conn.info[HAND_OVER]
                committing = True
        except Exception:
            # The commit failed, or the connection did around it: on PostgreSQL it may have
            # happened all the same (CommitOutcomeUnknown). SQLite's failed commit didn't,
            # and its row ids may be reused: nothing to give back there.
            if committing and hand_over is not None and hand_over.rows and not self.db.is_sqlite:
                self.give_back_outbox_rows(hand_over.rows)
            raise
        if hand_over is None:
            self.wake_outbox()
            return
        if hand_over.rows:
            self.take_outbox_rows(hand_over.rows)
        if hand_over.others:
            self.wake_outbox()
