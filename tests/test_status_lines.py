"""`!status` lines: the analysts' queue and an officer's list read only what a line shows
(storage.tips_repo.tips_in_queue / tips_by_officer), and each line must still read exactly
as the line for the whole tip does, whatever state the tip is in."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.cards import local_time, status_line
from bot.tips import Urgency
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
    assert "T-2 · routine · CLAIMED · console:ana · " in queue
    assert "T-3 · routine · NEEDS INFO · console:ana · waiting for the officer's answer · " in queue

    mine = lines_for(await h.say("@olly #tips !status"), "@olly")[0]
    # The tip waiting for the officer's answer first, then the others, newest first.
    assert shown(mine) == await whole_tip_lines(h, [3, 7, 6, 5, 4, 2, 1])
    assert "T-6 · routine · DUPLICATE · by console:ana of T-1 · " in mine
    assert "T-5 · purged under the retention policy" in mine
    assert "T-4 · routine · APPROVED · by console:ana · " in mine


async def test_the_queue_shows_the_most_urgent_first_and_counts_them_all(db) -> None:
    h = ConsoleHarness(db)
    for n in range(22):
        await h.say(f"@olly #tips !tip Routine tip {n} | urgency: routine")
    await h.say("@olly #tips !tip Priority tip | urgency: priority")
    await h.say("@olly #tips !tip Second priority tip | urgency: priority")
    await h.say("@olly #tips !tip Immediate tip | urgency: immediate")

    queue = lines_for(await h.say("@ana #review !status"), "@ana")[0]
    ids = [line.split(" · ")[0] for line in shown(queue) if line.startswith("T-")]
    # All 25 counted; 20 shown: immediate, then priority, then routine, oldest first in each.
    assert queue.startswith("@ana Open tips (25)"), queue
    assert ids == ["T-25", "T-23", "T-24", *(f"T-{n}" for n in range(1, 18))], ids
    assert "T-25 · immediate · NEW · " in queue
    assert "The 20 most urgent shown, oldest first within each urgency." in queue

    await h.say("@ana #review !claim T-25")
    await h.say("@ana #review !reject T-25 Already handled by patrol")
    queue = lines_for(await h.say("@ana #review !status"), "@ana")[0]
    assert queue.startswith("@ana Open tips (24)") and "T-25" not in queue, queue


async def test_an_officer_sees_the_latest_tips_and_how_many_there_are(db) -> None:
    h = ConsoleHarness(db)
    for n in range(12):
        await h.say(f"@olly #tips !tip Tip number {n}")
    mine = lines_for(await h.say("@olly #tips !status"), "@olly")[0]
    ids = [line.split(" · ")[0] for line in shown(mine) if line.startswith("T-")]
    assert mine.startswith("@olly Your tips: the 10 most recent of 12\n"), mine
    assert ids == [f"T-{n}" for n in range(12, 2, -1)], ids
    assert mine.endswith("An older tip: !status T-n, with the number from its receipt."), mine


async def test_a_tip_waiting_for_the_officers_answer_is_never_hidden(db) -> None:
    h = ConsoleHarness(db)
    await h.say("@olly #tips !tip Van at the depot gate")
    await h.say("@ana #review !claim T-1")
    await h.say("@ana #review !ask T-1 Which gate?")
    for n in range(12):
        await h.say(f"@olly #tips !tip Tip number {n}")
    mine = lines_for(await h.say("@olly #tips !status"), "@olly")[0]
    ids = [line.split(" · ")[0] for line in shown(mine) if line.startswith("T-")]
    assert mine.startswith(
        "@olly Your tips: 1 waiting for your answer, then the 9 most recent of 13\n"
    ), mine
    assert ids == ["T-1", *(f"T-{n}" for n in range(13, 4, -1))], ids
    assert "T-1 · routine · NEEDS INFO · console:ana · waiting for the officer's answer" in mine


def test_urgency_names_sort_in_their_order_of_urgency() -> None:
    """The queue's index orders by the urgency's name (storage/tables.py ix_tips_queue)."""
    assert sorted(Urgency, key=lambda u: u.value) == [
        Urgency.IMMEDIATE,
        Urgency.PRIORITY,
        Urgency.ROUTINE,
    ]


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
