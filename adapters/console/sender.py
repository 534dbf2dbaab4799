"""Delivers outbox rows to the terminal: ``#channel …`` or ``@person …`` lines."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from adapters.console.render import format_output
from bot.addresses import split_address
from bot.delivery import Outgoing


class ConsoleSender:
    platform = "console"

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._refs = itertools.count(1)

    def min_interval(self, target: str) -> float:
        return 0.0

    def rate_scope(self, target: str, op: str, *, ephemeral: bool) -> str:
        return target

    async def post(self, out: Outgoing) -> str:
        self._write(format_output(self._prefix(out), out.message))
        return f"console-{next(self._refs)}"

    async def edit(self, out: Outgoing, ref: str) -> None:
        self._write(format_output(self._prefix(out), out.message, edited=True))

    async def delete(self, out: Outgoing, ref: str) -> None:
        self._write(f"{self._prefix(out)} (deleted) a message was removed")

    async def find_sent(self, out: Outgoing) -> str | None:
        # A terminal keeps no history to check; a message whose send was interrupted by a
        # crash is printed again (the other platforms deduplicate).
        return None

    @staticmethod
    def _prefix(out: Outgoing) -> str:
        """``#review`` for a channel; ``@olly`` for a direct message or an answer only the
        person who asked sees."""
        _, name = split_address(out.ephemeral_to or out.target)
        return name if name.startswith("#") else f"@{name}"
