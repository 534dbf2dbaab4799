"""A monotonic clock for fakes that pace requests: tests move time instead of sleeping."""

from __future__ import annotations


class FakeMonotonic:
    """Drop-in for `time.monotonic`: call it for seconds; it moves only by `advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        # A monotonic clock never runs backwards; a test that tries has a bug.
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back")
        self._now += seconds
