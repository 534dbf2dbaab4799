"""How a scheduled job works through what is due: one item per transaction, so one item
that can't be handled never holds back the others (the next run retries it)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")


async def count_done(
    items: Iterable[Item], work: Callable[[Item], Awaitable[bool]], what: str
) -> int:
    """Run ``work`` on each item; returns how many it did (False: nothing left to do)."""
    done = 0
    for item in items:
        try:
            if await work(item):
                done += 1
        except Exception:
            log.exception("%s failed for %r; the next run retries it", what, item)
    return done
