"""`!status` lines: the analysts' queue and an officer's list read only what a line shows
(storage.tips_repo.tips_in_queue / tips_by_officer), and each line must still read exactly
as the line for the whole tip does, whatever state the tip is in."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.cards import local_time, status_line
from storage import tips_repo
from tests.harness import ConsoleHarness, lines_for

TIP = "!tip Man photographing the substation fence with a tripod | location: 5th & Main"


async def whole_tip_lines(h: ConsoleHarness, ids: list[int]) -> list[str]:
    tz = h.bot.core.policy.center.tz
    async with h.bot.core.db.read() as conn:
        lines = []
        for tip_id in ids:
            tip = await tips_repo.get_tip(conn, tip_id)
            assert tip is not None
            lines.append(status_line(tip, tz))
        return lines


def shown(message: str) -> list[str]:
    return [line.strip() for line in message.split("\n")[1:]]


async def test_status_lines_read_as_the_whole_tips_do_in_every_state(db) -> None:
    h = ConsoleHarness(db)
    for n in range(7):
        await h.say(f"@olly #tips {TIP} {n}")
    await h.say("@ana #review !claim T-2")  # claimed, by whom
    await h.say("@ana #review !claim T-3")
    await h.say("@ana #review !ask T-3 Which gate?")  # waiting for the officer
    await h.say("@ana #review !claim T-4")
    await h.say("@ana #review !approve T-4 tlp:green to:metro-pd confirm")  # by whom
    await h.say("@ana #review !claim T-5")
    await h.say("@ana #review !reject T-5 A surveyor")
    await h.say("@ana #review !claim T-6")
    await h.say("@ana #review !dup T-6 T-1")  # of which tip
    async with db.transaction() as conn:  # a rejected tip purged (retention)
        assert await tips_repo.purge_tip(conn, 5, now=datetime.now(UTC)) is not None

    queue = lines_for(await h.say("@ana #review !status"), "@ana")[0]
    assert shown(queue) == await whole_tip_lines(h, [1, 2, 3, 7])
    assert "Open tips (4)" in queue
    assert "T-2 · CLAIMED · console:ana · " in queue
    assert "T-3 · NEEDS INFO · console:ana · waiting for the officer's answer · " in queue

    mine = lines_for(await h.say("@olly #tips !status"), "@olly")[0]
    assert shown(mine) == await whole_tip_lines(h, [7, 6, 5, 4, 3, 2, 1])
    assert "T-6 · DUPLICATE · by console:ana of T-1 · " in mine
    assert "T-5 · purged under the retention policy" in mine
    assert "T-4 · APPROVED · by console:ana · " in mine


def test_local_times_read_as_strftime_gives_them() -> None:
    rng = random.Random(5)
    zones = [ZoneInfo(name) for name in ("America/New_York", "Asia/Kolkata", "UTC")]
    start = datetime(1999, 1, 1, tzinfo=UTC)
    # Around both of New York's changes of the clocks, and anywhere over thirty years.
    moments = [datetime(2026, 3, 8, 6, 0, tzinfo=UTC) + timedelta(minutes=m) for m in range(240)]
    moments += [datetime(2026, 11, 1, 4, 0, tzinfo=UTC) + timedelta(minutes=m) for m in range(240)]
    moments += [start + timedelta(seconds=rng.randrange(30 * 365 * 86400)) for _ in range(2000)]
    for when in moments:
        for tz in zones:
            expected = when.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
            assert local_time(when, tz) == expected
            # A time given in another zone reads the same.
            assert local_time(when.astimezone(zones[1]), tz) == expected
