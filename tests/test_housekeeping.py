"""Housekeeping jobs: Slack event ids are remembered long enough to catch retries only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.app import forget_old_events
from bot.clock import ManualClock
from storage.handled_events_repo import first_time
from tests.harness import ConsoleHarness

START = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


async def test_slack_event_ids_are_forgotten_after_a_day(db) -> None:
    clock = ManualClock(START)
    h = ConsoleHarness(db, clock=clock)
    async with db.transaction() as conn:
        assert await first_time(conn, "Ev1", now=clock.now())
        assert not await first_time(conn, "Ev1", now=clock.now())  # a retry

    clock.advance(timedelta(hours=23))
    assert await forget_old_events(h.bot.core) == 0
    clock.advance(timedelta(hours=2))
    assert await forget_old_events(h.bot.core) == 1
    async with db.transaction() as conn:
        assert await first_time(conn, "Ev1", now=clock.now())
