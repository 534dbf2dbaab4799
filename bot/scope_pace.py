"""The pace a rate-limit scope can take, learned from its 429s.

A platform that answers "rate limited" for a whole scope (Slack: a workspace's
chat.postMessage calls, whose limit Slack doesn't publish) refills its allowance steadily
and lets a burst through first. Sent at full concurrency again after its Retry-After, a
fan-out would meet the same 429 with every wave: the allowance's burst goes through and
the rest is refused, so it goes at about a burst a Retry-After, with thousands of refused
calls. So after a scope's first 429 the worker spaces its sends at a rate estimated from
what the scope accepted just before, probes upwards (doubling each second) until the next
429, steps back to the last rate that went through, and from then on creeps up 5% a
second (10% back at each refusal) — the scope's own limit, found by the platform's
answers, not a figure configured in advance. A scope idle for a while goes back to
unpaced: its allowance has refilled, and its next burst may go at once.

The sends of a paced scope wait in line and one ticker lets them go, one a turn, at the
rate as it is at that moment: a rate that grows speeds up the sends already waiting.
"""

from __future__ import annotations

import asyncio
from collections import deque

# What the estimate looks back on: sends accepted in the last few seconds, over at least
# one second (a burst alone, a few ms long, says nothing about the refill rate).
WINDOW = 5.0
MIN_WINDOW = 1.0
MIN_EVIDENCE = 2  # sends accepted in the window, to learn a first rate from
# Under the first estimate, so that the allowance refills while the scope is paced.
MARGIN = 0.95
# Upwards once a second: doubling until the first 429 met while paced, then 5%.
STEP = 1.0
PROBE_GROWTH = 2.0
CREEP_GROWTH = 1.05
BACK_OFF = 0.9  # refused while creeping
SLOWEST = 0.1  # sends a second: one every 10 s at worst, never none
FORGET_AFTER = 60.0  # seconds without a send


class ScopePace:
    """One scope's sends accepted lately and, once it has answered 429, its learned rate
    and the line of sends waiting for their turn. Times are the event loop's."""

    def __init__(self) -> None:
        self._accepted: deque[float] = deque()
        self.rate: float | None = None  # sends a second; None: unpaced
        self._next = 0.0  # when the next turn may be given
        self._raised = 0.0  # when the rate last went up
        self._probing = True
        self._last_send = 0.0
        self._resume = 0.0  # when the last 429's Retry-After ends
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._ticker: asyncio.Task[None] | None = None

    def paced(self, now: float) -> bool:
        """Whether sends in this scope wait for turns (it has answered 429 lately)."""
        if self.rate is not None and not self._waiters:
            if now - max(self._last_send, self._next) > FORGET_AFTER:
                self.rate = None  # idle long enough for the allowance to refill
                self._probing = True
        return self.rate is not None

    def expected_wait(self, now: float) -> float:
        """How long a send joining the line now would wait for its turn."""
        if self.rate is None:
            return 0.0
        return max(0.0, self._next - now, self._resume - now) + len(self._waiters) / self.rate

    async def turn(self) -> None:
        """Wait in line for the next turn. Cancelled, the place in line is given up."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick())
        await waiter

    def close(self) -> None:
        """Stop the ticker (the worker is stopping; whoever waited has given up)."""
        if self._ticker is not None:
            self._ticker.cancel()

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiters:
            now = loop.time()
            at = max(self._next, self._resume)
            if at > now:
                await asyncio.sleep(at - now)
                continue  # a 429 meanwhile may have moved the time
            waiter = self._waiters.popleft()
            if waiter.done():
                continue  # its sender gave up (stopping)
            rate = self.rate or SLOWEST
            if now - self._raised >= STEP:
                rate *= PROBE_GROWTH if self._probing else CREEP_GROWTH
                self.rate, self._raised = rate, now
            self._next = max(self._next, now) + 1.0 / rate
            self._last_send = now
            waiter.set_result(None)

    def accepted(self, now: float) -> None:
        """The platform took a send (whatever its answer, it counted against the limit)."""
        self._accepted.append(now)
        self._last_send = now
        self._trim(now)

    def limited(self, now: float, retry_after: float) -> float | None:
        """A 429 with this Retry-After (the worker holds the scope that long). Returns the
        rate learned from it; None when there is nothing to learn: one more answer to
        sends that were in flight together with one already counted (a wave of them is
        refused at once), or too few sends accepted lately to tell a rate from (then the
        Retry-After alone holds the scope, as before any pace)."""
        self._last_send = now
        if now < self._resume:
            self._resume = max(self._resume, now + retry_after)
            return None
        self._resume = now + retry_after
        self._trim(now)
        self._raised = self._resume  # no growth counted during the hold
        if self.rate is not None:
            # Refused while paced: back to the last rate that went a whole step without
            # a refusal (probing), or a little under this one (creeping), and creep on.
            self.rate = max(
                SLOWEST, self.rate / PROBE_GROWTH if self._probing else self.rate * BACK_OFF
            )
            self._probing = False
            return self.rate
        if len(self._accepted) < MIN_EVIDENCE:
            return None
        window = max(MIN_WINDOW, now - self._accepted[0])
        self.rate = max(SLOWEST, MARGIN * len(self._accepted) / window)
        return self.rate

    def _trim(self, now: float) -> None:
        while self._accepted and self._accepted[0] < now - WINDOW:
            self._accepted.popleft()
