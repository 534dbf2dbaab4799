"""Posts committed by this process go to its own running worker without a claim: inserted
already leased to it, handed over after the commit. What the worker guarantees must hold
for them as for claimed rows: nothing lost or doubled across a crash, nothing sent for a
rolled-back transaction, no other replica sending them, order per target, scheduled posts
kept for their time."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from bot.app import FusionBot, build
from bot.clock import ManualClock
from bot.core import Core, PolicyHolder
from bot.delivery import Outgoing
from bot.messages import Message
from bot.outbox_worker import OutboxWorker
from bot.settings import Settings
from commands.context import Command
from storage import outbox_repo
from storage.db import Database
from tests.platform_double import PlatformDouble
from tests.policies import console_policy
from tests.test_commit_cut import CommitCutter
from tests.test_commit_cut import relayed as cut_relay  # noqa: F401 (a fixture)
from tests.test_slack_flow import until

START = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
TIP = Command(
    actor="console:olly",
    channel="console:#tips",
    text="!tip Van circling the depot | category: survl",
)
# The tip's card goes to both review channels, its receipt to the officer's channel.
TIP_TARGETS = ["console:#review", "console:#review-night", "console:#tips"]


@dataclass
class GatedPlatform(PlatformDouble):
    """Takes each post only once the test opens the gate (a slow platform)."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0

    async def post(self, out: Outgoing) -> str:
        self.waiting += 1
        await self.gate.wait()
        return await super().post(out)


def process(url: str, platform: PlatformDouble, clock: ManualClock) -> FusionBot:
    """A bot process on the database at ``url``."""
    return build(
        Settings.from_environ({}),
        policy=console_policy(),
        clock=clock,
        senders={"console": platform},
        database=Database(url),
    )


async def started(bot: FusionBot) -> FusionBot:
    """Started, its worker running (posts committed before that are claimed instead)."""
    await bot.start(schedule=False)
    await until(lambda: bot.worker.hand_over() is not None)
    return bot


async def states(bot: FusionBot) -> dict[str, int]:
    async with bot.db.read() as conn:
        return await outbox_repo.count_by_state(conn)


async def test_a_tip_filed_here_is_delivered_by_this_process(db, database_url) -> None:
    clock = ManualClock(START)
    platform = PlatformDouble()
    bot = process(database_url, platform, clock)
    await started(bot)
    try:
        await bot.handle(TIP)
        await until(lambda: len(platform.posts()) == 3)
        assert sorted(p.target for p in platform.posts()) == TIP_TARGETS
    finally:
        await bot.stop()
    assert platform.find_sent_calls == 0  # never attempted before: nothing to ask
    reopened = process(database_url, PlatformDouble(), clock)
    assert await states(reopened) == {"sent": 3}
    await reopened.db.dispose()


async def test_another_replica_never_sends_what_this_one_holds(db, database_url) -> None:
    clock = ManualClock(START)
    slow = GatedPlatform()
    holder = process(database_url, slow, clock)
    await started(holder)
    other_platform = PlatformDouble()
    other = process(database_url, other_platform, clock)
    try:
        await holder.handle(TIP)
        await until(lambda: slow.waiting == 3)  # handed over, being sent
        # Another process delivers everything it may meanwhile: none of these.
        assert await other.drain(2.0) == {"console": 3}
        assert other_platform.received == []
        slow.gate.set()
        await until(lambda: len(slow.posts()) == 3)
    finally:
        slow.gate.set()
        await holder.stop()
        await other.db.dispose()
    assert sorted(p.target for p in slow.posts()) == TIP_TARGETS


async def test_a_crash_after_the_commit_before_the_hand_over_delivers_once(
    db, database_url
) -> None:
    clock = ManualClock(START)
    first = PlatformDouble()
    crashed = process(database_url, first, clock)
    await started(crashed)
    # The process dies between the commit and handing the rows to its worker.
    crashed.core.take_outbox_rows = lambda rows: None
    await crashed.handle(TIP)
    await crashed.stop()
    assert first.received == []

    second = PlatformDouble()
    restarted = process(database_url, second, clock)
    if database_url.startswith("postgresql"):
        # Other replicas may be running: the dead process's lease has to run out first.
        assert await restarted.drain(1.0) == {"console": 3}
        assert second.received == []
        clock.advance(timedelta(minutes=6))
    await restarted.start(schedule=False)  # SQLite: ends the dead run's leases
    try:
        await until(lambda: len(second.posts()) == 3)
        assert await restarted.drain() == {}
    finally:
        await restarted.stop()
    assert sorted(p.target for p in second.posts()) == TIP_TARGETS
    assert second.find_sent_calls == 3  # taken over: the platform asked before sending


async def test_a_crash_after_the_hand_over_mid_send_is_not_sent_twice(db, database_url) -> None:
    clock = ManualClock(START)
    slow = GatedPlatform()
    crashed = process(database_url, slow, clock)
    await started(crashed)
    await crashed.handle(TIP)
    await until(lambda: slow.waiting == 3)
    # The platform takes them, then the process dies before recording it.
    for task in list(crashed.worker._busy.values()):
        task.cancel()
    await asyncio.gather(*crashed.worker._busy.values(), return_exceptions=True)
    for row in await _leased(crashed):
        await PlatformDouble.post(slow, _outgoing(row))
    await crashed.stop()
    assert len(slow.posts()) == 3

    clock.advance(timedelta(minutes=6))
    restarted = process(database_url, slow, clock)
    assert await restarted.drain() == {}
    await restarted.db.dispose()
    assert len(slow.posts()) == 3  # asked first: nothing doubled
    assert slow.find_sent_calls == 3


async def test_a_rolled_back_transaction_hands_nothing_over(db, database_url) -> None:
    clock = ManualClock(START)
    platform = PlatformDouble()
    bot = process(database_url, platform, clock)
    await started(bot)
    try:
        with pytest.raises(RuntimeError):
            async with bot.core.transaction() as conn:
                await outbox_repo.enqueue_post(
                    conn, target="console:#tips", message=Message(text="never"), now=clock.now()
                )
                await outbox_repo.enqueue_posts(
                    conn,
                    targets=["console:#a", "console:#b"],
                    message=Message(text="never either"),
                    now=clock.now(),
                    message_key="alert:99",
                )
                raise RuntimeError("refused")
        await _post(bot, "console:#tips", "after")
        await until(lambda: len(platform.posts()) == 1)
        assert await bot.drain() == {}
    finally:
        await bot.stop()
    assert [p.text for p in platform.posts()] == ["after"]


async def test_a_scheduled_post_waits_for_its_time(db, database_url) -> None:
    clock = ManualClock(START)
    platform = PlatformDouble()
    bot = process(database_url, platform, clock)
    await started(bot)
    try:
        async with bot.core.transaction() as conn:
            await outbox_repo.enqueue_post(
                conn,
                target="console:#tips",
                message=Message(text="later"),
                now=clock.now(),
                not_before=clock.now() + timedelta(hours=1),
            )
        await _post(bot, "console:#tips", "now")
        await until(lambda: len(platform.posts()) == 1)
        assert await bot.drain(1.0) == {"console": 1}
        clock.advance(timedelta(hours=1))
        assert await bot.drain() == {}
    finally:
        await bot.stop()
    assert [p.text for p in platform.posts()] == ["now", "later"]


async def test_a_post_handed_over_waits_behind_older_ones_for_its_channel(db, database_url) -> None:
    clock = ManualClock(START)
    slow = GatedPlatform()
    bot = process(database_url, slow, clock)
    # Queued before this process started delivering (by another process, say): more than
    # the worker takes for one channel at a time.
    async with bot.db.transaction() as conn:
        for n in range(40):
            await outbox_repo.enqueue_post(
                conn, target="console:#busy", message=Message(text=f"old {n}"), now=clock.now()
            )
    await started(bot)
    try:
        await until(lambda: slow.waiting == 1)  # the old ones are being sent
        await _post(bot, "console:#busy", "new")
        slow.gate.set()
        await until(lambda: len(slow.posts()) == 41)
    finally:
        slow.gate.set()
        await bot.stop()
    assert [p.text for p in slow.posts()] == [f"old {n}" for n in range(40)] + ["new"]


def worker_and_core(
    db: Database, platform: GatedPlatform, clock: ManualClock, *, concurrency: int
) -> tuple[OutboxWorker, Core]:
    """A worker with a small cap on sends in flight, wired to a core as bot.app.build does."""
    worker = OutboxWorker(db, {"console": platform}, clock, concurrency=concurrency)
    core = Core(
        db=db,
        policies=PolicyHolder(console_policy(), "test"),
        clock=clock,
        wake_outbox=worker.wake,
        outbox_hand_over=worker.hand_over,
        take_outbox_rows=worker.take,
    )
    return worker, core


async def test_a_fan_out_keeps_the_cap_on_sends_in_flight(db) -> None:
    clock = ManualClock(START)
    slow = GatedPlatform()
    worker, core = worker_and_core(db, slow, clock, concurrency=5)
    running = asyncio.create_task(worker.run())
    try:
        await until(lambda: worker.hand_over() is not None)
        async with core.transaction() as conn:
            await outbox_repo.enqueue_posts(
                conn,
                targets=[f"console:#p{n}" for n in range(30)],
                message=Message(text="alert"),
                now=clock.now(),
                message_key="alert:1",
            )
        await until(lambda: slow.waiting == 5)
        await asyncio.sleep(0.1)
        assert slow.waiting == 5  # no more than the cap at once
        slow.gate.set()
        await until(lambda: len(slow.posts()) == 30)
    finally:
        slow.gate.set()
        await worker.stop()
        await running
    assert sorted(p.target for p in slow.posts()) == sorted(f"console:#p{n}" for n in range(30))
    async with db.read() as conn:
        assert await outbox_repo.count_by_state(conn) == {"sent": 30}


async def _post(bot: FusionBot, target: str, text: str) -> None:
    async with bot.core.transaction() as conn:
        await outbox_repo.enqueue_post(
            conn, target=target, message=Message(text=text), now=bot.core.clock.now()
        )


async def _leased(bot: FusionBot) -> list[outbox_repo.OutboxRow]:
    from sqlalchemy import select

    from storage.tables import outbox

    async with bot.db.read() as conn:
        found = await conn.execute(
            select(outbox).where(outbox.c.state == outbox_repo.SENDING).order_by(outbox.c.id)
        )
        return [outbox_repo._row(r) for r in found]


def _outgoing(row: outbox_repo.OutboxRow) -> Outgoing:
    return Outgoing(target=row.target, message=row.message, key=row.key)


async def test_a_tip_whose_commit_was_cut_but_applied_is_not_held_up_by_its_lease(
    cut_relay: tuple[FusionBot, CommitCutter, list[str]],  # noqa: F811 (the fixture)
) -> None:
    # The connection dies after PostgreSQL applied the commit: the worker can't tell
    # whether the rows exist, so they are not sent from memory; given back, they go out
    # as claimed rows do, not when their lease (minutes) runs out.
    bot, cutter, printed = cut_relay
    await started(bot)
    cutter.arm("after", b"INSERT INTO tips")
    await bot.handle(
        Command(
            "console:officer",
            "console:#tips",
            "!tip Drone over the stadium | category: photo",
            source_key="slack:req-1",
        )
    )
    assert cutter.cuts == 1
    await until(lambda: sum("Received T-1" in line for line in printed) == 1)
    await until(lambda: sum("Drone over the stadium" in line for line in printed) == 2)
    assert await bot.drain() == {}


async def test_rows_waiting_for_room_past_their_lease_are_not_sent_twice(db, database_url) -> None:
    clock = ManualClock(START)
    slow = GatedPlatform()
    worker, core = worker_and_core(db, slow, clock, concurrency=1)
    running = asyncio.create_task(worker.run())
    other_platform = PlatformDouble()
    other = process(database_url, other_platform, clock)
    targets = [f"console:#p{n}" for n in range(10)]
    try:
        await until(lambda: worker.hand_over() is not None)
        async with core.transaction() as conn:
            await outbox_repo.enqueue_posts(
                conn,
                targets=targets,
                message=Message(text="alert"),
                now=clock.now(),
                message_key="a",
            )
        await until(lambda: slow.waiting == 1)  # one in flight, the rest wait for room
        # The platform hangs past the lease: another process takes over what was leased.
        clock.advance(timedelta(minutes=6))
        worker.wake()
        await asyncio.sleep(0.2)
        await other.drain(2.0)
        slow.gate.set()
        await until(lambda: len(slow.posts()) + len(other_platform.posts()) >= len(targets))
        await asyncio.sleep(0.3)
    finally:
        slow.gate.set()
        await worker.stop()
        await running
        await other.db.dispose()
    delivered = Counter(p.target for p in slow.posts() + other_platform.posts())
    assert set(delivered) == set(targets)
    # Those that waited for room went back to the queue in time: each arrived once. (The
    # two that had a slot were in flight past their lease, as a claimed row can be: the
    # platform call's timeout, not the hand-over, bounds that.)
    assert [delivered[t] for t in targets[2:]] == [1] * 8


async def test_a_delivery_recorded_by_a_cut_commit_is_not_sent_again(
    cut_relay: tuple[FusionBot, CommitCutter, list[str]],  # noqa: F811 (the fixture)
) -> None:
    # PostgreSQL applies the commit that records deliveries, then the connection dies:
    # the worker can't tell, and must not queue them again (the console, like an
    # ephemeral Slack answer, can't be asked whether a message arrived).
    bot, cutter, printed = cut_relay
    await started(bot)
    # Recorded in autocommit (Database.one_statement): the UPDATE is its own commit.
    cutter.arm("after", b"platform_ref=$4::VARCHAR, sent_at=", autocommit=True)
    await bot.handle(
        Command("console:officer", "console:#tips", "!tip Drone over the stadium | category: photo")
    )
    await until(lambda: cutter.cuts == 1)
    await asyncio.sleep(3.0)  # past the backoff of a retry
    assert await bot.drain() == {}
    assert sum("Received T-1" in line for line in printed) == 1, printed
    assert sum("Drone over the stadium" in line for line in printed) == 2, printed
