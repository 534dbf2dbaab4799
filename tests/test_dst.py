"""Daylight saving in the center's zone (America/New_York) for digests and ``at:`` alerts.

Spring forward 2027-03-14: 02:00 EST jumps to 03:00 EDT (07:00 UTC), so 02:xx never happens.
Fall back 2026-11-01: 02:00 EDT goes back to 01:00 EST (06:00 UTC), so 01:xx happens twice:
01:30 EDT is 05:30 UTC and 01:30 EST is 06:30 UTC.

tests/test_digests.py covers a 07:00 digest walked across a change (a time that exists
once); these cover the times that don't exist or exist twice."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.clock import ManualClock
from bot.digests import latest_fire
from storage.db import Database
from storage.tables import alerts
from tests.harness import ConsoleHarness, lines_for
from tests.policies import console_policy
from tests.test_alerts import ALERT_POLICY, TIP
from tests.test_digests import tick

NY = ZoneInfo("America/New_York")


def policy_with_transit_digest_at(cron: str):
    text = ALERT_POLICY.replace('delivery = "digest"', f'delivery = "digest"\ndigest = "{cron}"')
    assert f'digest = "{cron}"' in text
    return console_policy(text)


async def claimed(db: Database, clock: ManualClock, cron: str = "0 7 * * *") -> ConsoleHarness:
    h = ConsoleHarness(db, policy=policy_with_transit_digest_at(cron), clock=clock)
    await h.say(TIP)
    await h.say("@ana #review !claim T-1")
    return h


async def alert_state(db: Database) -> str:
    async with db.read() as conn:
        return (await conn.execute(select(alerts.c.state))).scalar_one()


# --- digests ---------------------------------------------------------------------------


async def test_a_digest_set_in_the_spring_forward_gap_goes_out_that_day(db) -> None:
    """02:30 doesn't exist on 2027-03-14: the digest goes at 03:30 EDT (the hour the clocks
    skipped, added), not a day late, and at 02:30 EDT again the day after."""
    clock = ManualClock(datetime(2027, 3, 13, 20, 0, tzinfo=UTC))  # 15:00 EST the day before
    h = await claimed(db, clock, "30 2 * * *")
    await h.say("@ana #review !approve T-1 tlp:green to:transit confirm")

    clock.set(datetime(2027, 3, 14, 7, 29, tzinfo=UTC))  # 03:29 EDT
    assert lines_for(await tick(h), "#transit") == []
    clock.set(datetime(2027, 3, 14, 7, 30, tzinfo=UTC))  # 03:30 EDT
    [digest] = lines_for(await tick(h), "#transit")
    assert "Digest for Regional Transit Authority · 2027-03-14 03:30 EDT · 1 alert" in digest
    assert await tick(h) == []

    # The next day's digest is at 02:30 EDT (06:30 UTC), with what was approved since.
    await h.say("@olly #tips !tip Drone over the rail yard | category: survl | region: north")
    await h.say("@ana #review !claim T-2")
    await h.say("@ana #review !approve T-2 tlp:clear to:transit confirm")
    clock.set(datetime(2027, 3, 15, 6, 29, tzinfo=UTC))
    assert lines_for(await tick(h), "#transit") == []
    clock.set(datetime(2027, 3, 15, 6, 30, tzinfo=UTC))
    [digest] = lines_for(await tick(h), "#transit")
    assert "2027-03-15 02:30 EDT · 1 alert" in digest and "A-2" in digest


async def test_a_digest_in_the_repeated_hour_lists_each_alert_once(db) -> None:
    """01:30 happens twice on 2026-11-01. An alert approved before the first 01:30 is in the
    01:30 EDT digest; one approved between the two is in the 01:30 EST digest; neither
    appears twice and neither waits a day."""
    clock = ManualClock(datetime(2026, 10, 31, 16, 0, tzinfo=UTC))
    h = await claimed(db, clock, "30 1 * * *")
    await h.say("@ana #review !approve T-1 tlp:green to:transit confirm title: First")

    clock.set(datetime(2026, 11, 1, 5, 30, tzinfo=UTC))  # 01:30 EDT
    [first] = lines_for(await tick(h), "#transit")
    assert "2026-11-01 01:30 EDT · 1 alert" in first and "A-1 · TLP:GREEN · First" in first

    clock.set(datetime(2026, 11, 1, 5, 45, tzinfo=UTC))  # 01:45 EDT
    await h.say("@olly #tips !tip Drone over the rail yard | category: survl | region: north")
    await h.say("@ana #review !claim T-2")
    await h.say("@ana #review !approve T-2 tlp:clear to:transit confirm title: Second")
    clock.set(datetime(2026, 11, 1, 6, 29, tzinfo=UTC))  # 01:29 EST
    assert lines_for(await tick(h), "#transit") == []
    clock.set(datetime(2026, 11, 1, 6, 30, tzinfo=UTC))  # 01:30 EST
    [second] = lines_for(await tick(h), "#transit")
    assert "2026-11-01 01:30 EST · 1 alert" in second
    assert "A-2 · TLP:CLEAR · Second" in second and "A-1" not in second
    assert await tick(h) == []


async def test_a_digest_caught_up_across_the_repeated_hour_names_the_latest_period(db) -> None:
    """The bot is down from before the fall-back night until three days later: one digest,
    for the latest 01:30, at once (not after a long stall, not labelled with a stale day)."""
    clock = ManualClock(datetime(2026, 10, 31, 16, 0, tzinfo=UTC))
    h = await claimed(db, clock, "30 1 * * *")
    await h.say("@ana #review !approve T-1 tlp:green to:transit confirm")

    clock.set(datetime(2026, 11, 4, 12, 0, tzinfo=UTC))
    started = time.monotonic()
    [digest] = lines_for(await tick(h), "#transit")
    took = time.monotonic() - started
    assert "2026-11-04 01:30 EST · 1 alert" in digest
    # Walking four days of a daily schedule is a handful of steps, not a stuck loop.
    assert took < 2.0, f"catching up took {took:.1f} s"
    assert await tick(h) == []


def _utc(when: datetime | None) -> datetime | None:
    # Python never calls a time in the repeated hour equal to one in another zone (PEP 495):
    # compare instants in UTC.
    return None if when is None else when.astimezone(UTC)


def test_latest_fire_steps_through_both_0130s_and_the_skipped_0230() -> None:
    fall_since = datetime(2026, 10, 31, 12, 0, tzinfo=UTC)
    # Each 01:30 of the night, then the next days' — never the same instant twice.
    for now, expected in [
        (datetime(2026, 11, 1, 5, 31, tzinfo=UTC), datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
        (datetime(2026, 11, 1, 6, 31, tzinfo=UTC), datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),
        (datetime(2026, 11, 2, 6, 31, tzinfo=UTC), datetime(2026, 11, 2, 6, 30, tzinfo=UTC)),
        (datetime(2026, 11, 9, 0, 0, tzinfo=UTC), datetime(2026, 11, 8, 6, 30, tzinfo=UTC)),
    ]:
        assert _utc(latest_fire("30 1 * * *", NY, since=fall_since, now=now)) == expected
    spring_since = datetime(2027, 3, 13, 12, 0, tzinfo=UTC)
    assert _utc(
        latest_fire(
            "30 2 * * *", NY, since=spring_since, now=datetime(2027, 3, 14, 7, 30, tzinfo=UTC)
        )
    ) == datetime(2027, 3, 14, 7, 30, tzinfo=UTC)
    assert _utc(
        latest_fire("30 2 * * *", NY, since=spring_since, now=datetime(2027, 3, 16, 12, tzinfo=UTC))
    ) == datetime(2027, 3, 16, 6, 30, tzinfo=UTC)
    # Every 20 minutes through the repeated hour: 6 fires from 01:00 EDT to 01:40 EST.
    fires = []
    since = datetime(2026, 11, 1, 4, 59, tzinfo=UTC)
    now = since
    while now < datetime(2026, 11, 1, 6, 59, tzinfo=UTC):
        now += timedelta(minutes=1)
        fire = _utc(latest_fire("*/20 1 * * *", NY, since=since, now=now))
        if fire is not None and fire not in fires:
            fires.append(fire)
    assert [f.strftime("%H:%M") for f in fires] == [
        "05:00",
        "05:20",
        "05:40",
        "06:00",
        "06:20",
        "06:40",
    ]


# --- at: scheduled alerts --------------------------------------------------------------


async def test_at_a_time_in_the_spring_forward_gap_is_refused_with_one_that_exists(db) -> None:
    """at:2027-03-14T02:30 names a time that doesn't exist: sending an hour early or late
    on a guess is worse than asking, so the analyst is told and given a time that exists."""
    clock = ManualClock(datetime(2027, 3, 13, 20, 0, tzinfo=UTC))
    h = await claimed(db, clock)
    for command in (
        "!approve T-1 tlp:amber to:metro-pd at:2027-03-14T02:30 confirm",
        "!approve T-1 tlp:amber to:metro-pd at:2027-03-14 02:30",
        "!approve T-1 tlp:amber to:metro-pd at:02:30 confirm",  # the next 02:30 is that one
    ):
        out = await h.say(f"@ana #review {command}")
        assert len(out) == 1 and out[0].startswith("@ana "), out
        assert (
            "2027-03-14 02:30 doesn't exist in America/New_York: the clocks go forward that "
            "night and skip it. Give a time outside the skipped hour, e.g. at:2027-03-14 03:30."
        ) in out[0]
    async with db.read() as conn:
        assert (await conn.execute(select(alerts))).all() == []

    out = await h.say("@ana #review !approve T-1 tlp:amber to:metro-pd at:2027-03-14 03:30 confirm")
    assert "scheduled for 2027-03-14 03:30 EDT" in lines_for(out, "@ana")[0]


async def test_at_a_time_in_the_repeated_hour_goes_at_the_one_the_analyst_sees(db) -> None:
    """01:30 on 2026-11-01 happens twice. A bare time is the first (EDT), and the
    confirmation says so; an explicit -05:00 picks the second (EST)."""
    clock = ManualClock(datetime(2026, 10, 31, 16, 0, tzinfo=UTC))
    h = await claimed(db, clock)
    first = "2026-11-01 01:30 EDT (the first 01:30 that night: the clocks go back an hour)"
    preview = await h.say("@ana #review !approve T-1 tlp:amber to:metro-pd at:2026-11-01 01:30")
    assert f"Timing: at {first}" in preview[0]
    out = await h.say("@ana #review !approve T-1 tlp:amber to:metro-pd at:2026-11-01T01:30 confirm")
    assert f"scheduled for {first}" in lines_for(out, "@ana")[0]
    await h.say("@olly #tips !tip Drone over the rail yard | category: survl | region: north")
    await h.say("@ana #review !claim T-2")
    out = await h.say(
        "@ana #review !approve T-2 tlp:amber to:metro-pd at:2026-11-01T01:30-05:00 confirm"
    )
    assert (
        "scheduled for 2026-11-01 01:30 EST (the second 01:30 that night: the clocks go back"
        in lines_for(out, "@ana")[0]
    )

    def alert_refs(out: list[str]) -> list[str]:
        return [
            ref for line in lines_for(out, "#metro-pd") for ref in ("A-1", "A-2") if ref in line
        ]

    clock.set(datetime(2026, 11, 1, 5, 29, tzinfo=UTC))
    assert alert_refs(await tick(h)) == []
    clock.set(datetime(2026, 11, 1, 5, 30, tzinfo=UTC))  # 01:30 EDT
    assert alert_refs(await tick(h)) == ["A-1"]
    clock.set(datetime(2026, 11, 1, 6, 29, tzinfo=UTC))  # 01:29 EST, an hour on
    assert alert_refs(await tick(h)) == []
    clock.set(datetime(2026, 11, 1, 6, 30, tzinfo=UTC))  # 01:30 EST
    assert alert_refs(await tick(h)) == ["A-2"]
    assert await tick(h) == []
