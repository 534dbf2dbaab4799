"""The delivery outbox: nothing lost, nothing doubled, paced, retried, coalesced."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from bot.app import FusionBot, build
from bot.clock import ManualClock
from bot.delivery import PermanentFailure, RateLimited, TemporaryFailure
from bot.messages import Message
from bot.outbox_worker import OutboxWorker
from bot.settings import Settings
from commands.context import Command
from storage import outbox_repo
from storage.audit_repo import load_audit
from storage.db import Database
from tests.platform_double import PlatformDouble
from tests.policies import console_policy

START = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
TIP = Command(
    actor="console:olly",
    channel="console:#tips",
    text="!tip Van circling the depot | category: survl",
)


def bot_on(database: Database, platform: PlatformDouble, clock: ManualClock) -> FusionBot:
    return build(
        Settings.from_environ({}),
        policy=console_policy(),
        clock=clock,
        senders={"console": platform},
        database=database,
    )


def new_bot(url: str, platform: PlatformDouble, clock: ManualClock) -> FusionBot:
    """A new process on the same database."""
    return bot_on(Database(url), platform, clock)


async def test_crash_between_commit_and_delivery_delivers_exactly_once(db, database_url) -> None:
    clock = ManualClock(START)
    first = PlatformDouble()
    crashed = new_bot(database_url, first, clock)
    await crashed.handle(TIP)  # committed; the process dies before its worker sends anything
    await crashed.db.dispose()
    assert first.received == []

    second = PlatformDouble()
    restarted = new_bot(database_url, second, clock)
    assert await restarted.drain() == {}
    await restarted.drain()  # a second pass finds nothing more to send
    targets = sorted(r.target for r in second.posts())
    assert targets == ["console:#review", "console:#review-night", "console:#tips"]
    await restarted.db.dispose()


async def test_crash_during_send_is_not_sent_twice(db, database_url) -> None:
    clock = ManualClock(START)
    platform = PlatformDouble()
    crashed = new_bot(database_url, platform, clock)
    await crashed.handle(TIP)
    # The dying process took the rows and the platform received them, but the process was
    # killed before it could record that.
    async with crashed.db.transaction() as conn:
        rows = await outbox_repo.claim_due(
            conn, now=clock.now(), lease=timedelta(minutes=5), platforms=["console"]
        )
    for row in rows:
        await platform.post(_outgoing(row))
    await crashed.db.dispose()
    assert len(platform.posts()) == 3

    clock.advance(timedelta(minutes=6))  # the dead process's lease runs out
    restarted = new_bot(database_url, platform, clock)
    assert await restarted.drain() == {}
    assert len(platform.posts()) == 3  # asked the platform first; nothing doubled
    assert platform.find_sent_calls == 3
    await restarted.db.dispose()


async def test_sqlite_restart_takes_over_unfinished_sends_at_once(db, database_url) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL is shared by replicas: a lease there runs out, it isn't ended")
    clock = ManualClock(START)
    platform = PlatformDouble()
    crashed = new_bot(database_url, platform, clock)
    await crashed.handle(TIP)
    async with crashed.db.transaction() as conn:
        rows = await outbox_repo.claim_due(
            conn, now=clock.now(), lease=timedelta(minutes=5), platforms=["console"]
        )
    await platform.post(_outgoing(rows[0]))  # one arrived before the crash, two didn't
    await crashed.db.dispose()

    restarted = new_bot(database_url, platform, clock)  # no waiting for the lease
    await restarted.start(schedule=False)
    assert await restarted.drain() == {}
    assert sorted(p.target for p in platform.posts()) == sorted(r.target for r in rows)
    assert platform.find_sent_calls == 3  # each asked first; the one that arrived not resent
    await restarted.stop()


async def test_private_answers_do_not_wait_for_the_channels_pace(db) -> None:
    pace = 30.0  # seconds between messages everyone in the channel sees
    clock = ManualClock(START)
    platform = PlatformDouble(interval=pace)
    bot = bot_on(db, platform, clock)
    async with bot.core.transaction() as conn:
        await outbox_repo.enqueue_post(
            conn, target="console:#tips", message=Message(text="card"), now=clock.now()
        )
        for n in range(3):
            await outbox_repo.enqueue_post(
                conn,
                target="console:#tips",
                ephemeral_to=f"console:officer{n}",
                message=Message(text=f"receipt {n}"),
                now=clock.now(),
            )
    assert await bot.drain(pace * 4) == {}
    card, *receipts = platform.received
    assert [r.text for r in receipts] == ["receipt 0", "receipt 1", "receipt 2"]
    # Each receipt went out right behind the card, not a pace apart.
    assert all(r.at - card.at < pace for r in receipts)


async def test_temporary_failures_are_retried_with_backoff(db) -> None:
    clock = ManualClock(START)
    platform = PlatformDouble()
    bot = bot_on(db, platform, clock)
    platform.fail_next(TemporaryFailure("timeout"), TemporaryFailure("502"))
    await _post(bot, "console:#review", "hello")
    await bot.drain()
    assert platform.posts() == []
    rows = await _rows(bot)
    assert rows[0].attempts == 1 and rows[0].next_attempt_at > clock.now()

    for _ in range(2):
        clock.advance(timedelta(minutes=10))
        await bot.drain()
    assert [r.text for r in platform.posts()] == ["hello"]
    assert (await _rows(bot))[0].state == "sent"


# The database refuses to record any delivery while record_fault holds a row: what a cut
# connection does to the statement that marks a row sent, made repeatable.
_REFUSE_RECORDS = {
    "postgresql": [
        "CREATE TABLE record_fault (n integer)",
        """CREATE FUNCTION refuse_record() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM record_fault) THEN
                RAISE EXCEPTION 'injected: the record failed';
            END IF;
            RETURN NEW;
        END $$""",
        "CREATE TRIGGER refuse_record BEFORE UPDATE ON outbox FOR EACH ROW "
        "WHEN (NEW.state = 'sent') EXECUTE FUNCTION refuse_record()",
        "INSERT INTO record_fault VALUES (1)",
    ],
    "sqlite": [
        "CREATE TABLE record_fault (n integer)",
        "CREATE TRIGGER refuse_record BEFORE UPDATE ON outbox FOR EACH ROW "
        "WHEN NEW.state = 'sent' AND EXISTS (SELECT 1 FROM record_fault) "
        "BEGIN SELECT RAISE(ABORT, 'injected: the record failed'); END",
        "INSERT INTO record_fault VALUES (1)",
    ],
}


async def test_a_delivery_whose_record_fails_is_recorded_later_not_sent_again(db, caplog) -> None:
    # An officer's receipt in Slack is ephemeral: the platform can't be asked whether it
    # arrived, so a delivery retried because its record failed reached the officer twice.
    clock = ManualClock(START)
    platform = PlatformDouble(remembers_keys=False)
    bot = bot_on(db, platform, clock)
    async with bot.core.transaction() as conn:
        await outbox_repo.enqueue_post(
            conn,
            target="console:#tips",
            ephemeral_to="console:olly",
            message=Message(text="Received T-1"),
            now=clock.now(),
        )
    async with db.transaction() as conn:
        for statement in _REFUSE_RECORDS[db.dialect]:
            await conn.exec_driver_sql(statement)

    draining = asyncio.create_task(bot.drain(10))
    # Sent, then its record refused (at least once).
    for _ in range(200):
        if platform.received and "record failed" in caplog.text:
            break
        await asyncio.sleep(0.05)
    assert [r.text for r in platform.received] == ["Received T-1"]
    async with db.transaction() as conn:
        await conn.exec_driver_sql("DELETE FROM record_fault")
    await draining
    clock.advance(timedelta(minutes=30))  # past any retry's backoff
    assert await bot.drain() == {}

    assert [r.text for r in platform.received] == ["Received T-1"]
    assert [r.state for r in await _rows(bot)] == [outbox_repo.SENT]


async def test_rate_limit_waits_for_retry_after_without_using_up_attempts(db) -> None:
    clock = ManualClock(START)
    platform = PlatformDouble()
    bot = bot_on(db, platform, clock)
    platform.fail_next(*(RateLimited(30.0) for _ in range(20)))
    await _post(bot, "console:#review", "one")
    await _post(bot, "console:#review", "two")
    for _ in range(20):
        await bot.drain()
        rows = await _rows(bot)
        assert all(r.next_attempt_at == clock.now() + timedelta(seconds=30) for r in rows)
        clock.advance(timedelta(seconds=30))
    await bot.drain()
    assert [r.text for r in platform.posts()] == ["one", "two"]  # order kept, none dropped
    assert all(r.attempts == 0 for r in await _rows(bot))


async def test_a_message_queued_during_retry_after_waits_with_the_others(db) -> None:
    # The channel answered "rate limited, retry in 30 s": a card queued meanwhile doesn't
    # try its luck (another 429) nor overtake the one waiting; both go when the time is up.
    clock = ManualClock(START)
    platform = PlatformDouble()
    bot = bot_on(db, platform, clock)
    platform.fail_next(RateLimited(30.0))
    await _post(bot, "console:#review", "one")
    await bot.drain()
    await _post(bot, "console:#review", "two")
    await bot.drain()
    assert platform.posts() == []
    clock.advance(timedelta(seconds=30))
    await bot.drain()
    assert [r.text for r in platform.posts()] == ["one", "two"]


@pytest.mark.parametrize(
    ("shared_limit", "sent_meanwhile"),
    [
        # A limit on the bot's account (Matrix) or a workspace (Slack): after the 429,
        # nothing more is tried anywhere it applies ("two" would have gone through).
        (True, []),
        # A limit of that one target: the others go on.
        (False, ["two"]),
    ],
)
async def test_a_rate_limit_holds_every_target_that_shares_it_until_retry_after(
    db, shared_limit: bool, sent_meanwhile: list[str]
) -> None:
    clock = ManualClock(START)
    platform = PlatformDouble(shared_limit=shared_limit)
    bot = bot_on(db, platform, clock)
    platform.fail_next(RateLimited(30.0))
    await _post(bot, "console:#review", "one")
    await bot.drain()
    await _post(bot, "console:#elsewhere", "two")
    await bot.drain()
    assert [r.text for r in platform.posts()] == sent_meanwhile
    clock.advance(timedelta(seconds=30))
    await bot.drain()
    assert sorted(r.text for r in platform.posts()) == ["one", "two"]


async def test_permanent_failure_is_recorded_and_audited(db) -> None:
    clock = ManualClock(START)
    platform = PlatformDouble()
    bot = bot_on(db, platform, clock)
    platform.fail_next(PermanentFailure("channel_not_found"))
    await _post(bot, "console:#gone", "hello")
    await bot.drain()
    assert (await _rows(bot))[0].state == "failed"
    async with db.read() as conn:
        audit = await load_audit(conn)
    assert (
        audit[-1].action == "delivery.failed" and audit[-1].details["error"] == "channel_not_found"
    )


async def test_edits_waiting_together_collapse_into_the_latest(db) -> None:
    clock = ManualClock(START)
    platform = PlatformDouble()
    bot = bot_on(db, platform, clock)
    await bot.handle(TIP)
    await bot.handle(Command(actor="console:ana", channel="console:#review", text="!claim T-1"))
    await bot.handle(
        Command(actor="console:ana", channel="console:#review", text="!ask T-1 Which depot?")
    )
    await bot.drain()
    # The card hadn't left yet when it changed twice: it leaves once, in its latest state.
    cards = [r for r in platform.posts("console:#review") if r.key.startswith("card:")]
    assert len(cards) == 1
    assert not [r for r in platform.received if r.op.startswith("edit")]

    await bot.handle(
        Command(
            actor="console:olly", channel="console:olly", text="!reply T-1 North depot", is_dm=True
        )
    )
    await bot.drain()
    edits = [
        r for r in platform.received if r.op.startswith("edit") and r.target == "console:#review"
    ]
    assert len(edits) == 1 and edits[0].op == "edit ref-" + str(
        platform.received.index(cards[0]) + 1
    )


async def test_each_channel_keeps_the_platforms_pace(db) -> None:
    platform = PlatformDouble(interval=0.05)
    bot = bot_on(db, platform, ManualClock(START))
    for n in range(5):
        await _post(bot, "console:#review", f"m{n}")
        await _post(bot, "console:#other", f"o{n}")
    await bot.drain()
    for target in ("console:#review", "console:#other"):
        times = [r.at for r in platform.posts(target)]
        assert len(times) == 5
        assert all(b - a >= 0.045 for a, b in itertools.pairwise(times))


@dataclass
class SlowPlatform(PlatformDouble):
    """Each post takes a while to be answered, like a real API under load."""

    latency: float = 0.02
    in_flight: int = 0
    most_in_flight: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def post(self, out) -> str:  # type: ignore[no-untyped-def]
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
            self.arrived.set()
            return await super().post(out)
        finally:
            self.in_flight -= 1


async def _queue(db: Database, clock: ManualClock, targets: list[str], prefix: str = "m") -> None:
    async with db.transaction() as conn:
        for n, target in enumerate(targets):
            await outbox_repo.enqueue_post(
                conn, target=target, message=Message(text=f"{prefix}{n}"), now=clock.now()
            )


async def test_sends_in_flight_never_exceed_the_workers_concurrency(db) -> None:
    # A fan-out to many channels: as many calls at once as the worker is allowed, no more
    # (more only slows every call down), and every slot kept busy until the end.
    clock = ManualClock(START)
    platform = SlowPlatform()
    worker = OutboxWorker(db, {"console": platform}, clock, concurrency=5)
    targets = [f"console:#partner{n}" for n in range(40)]
    await _queue(db, clock, targets)
    assert await worker.drain() == {}
    assert platform.most_in_flight == 5
    assert sorted(r.target for r in platform.posts()) == sorted(targets)  # each once


async def test_a_channel_waiting_for_its_pace_holds_no_send_slot(db) -> None:
    # One slot, and a channel with a backlog it may only send once a second: another
    # channel's message goes out at once, not after the whole backlog. (A pace long enough
    # that a slow commit on a loaded machine, 0.24 s once, doesn't pass for a held slot.)
    pace = 0.6
    clock = ManualClock(START)
    platform = PlatformDouble(interval=pace)
    worker = OutboxWorker(db, {"console": platform}, clock, concurrency=1)
    await _queue(db, clock, ["console:#busy"] * 4, prefix="busy")
    await _queue(db, clock, ["console:#quiet"], prefix="quiet")
    assert await worker.drain() == {}
    busy = platform.posts("console:#busy")
    [quiet] = platform.posts("console:#quiet")
    assert len(busy) == 4
    assert quiet.at - busy[0].at < pace / 2
    assert all(b.at - a.at >= pace * 0.9 for a, b in itertools.pairwise(busy))


async def test_a_message_queued_while_the_worker_claims_goes_out_without_waiting_for_a_poll(
    db,
) -> None:
    # Each message is queued the moment the one before arrives, so its commit lands while
    # the worker is still busy with the one before (recording it, claiming again). Every
    # commit wakes the worker; none may be left for the next poll (a minute here).
    clock = ManualClock(START)
    platform = SlowPlatform(latency=0.0)
    worker = OutboxWorker(db, {"console": platform}, clock, poll_interval=60.0)
    running = asyncio.create_task(worker.run())
    try:
        for n in range(100):
            await _queue(db, clock, [f"console:#c{n % 3}"], prefix=f"r{n}-")
            worker.wake()
            async with asyncio.timeout(5):
                while len(platform.posts()) <= n:
                    await platform.arrived.wait()
                    platform.arrived.clear()
    finally:
        await worker.stop()
        await running
    assert len(platform.posts()) == 100


async def _post(bot, target: str, text: str) -> None:
    async with bot.core.transaction() as conn:
        await outbox_repo.enqueue_post(
            conn, target=target, message=Message(text=text), now=bot.core.clock.now()
        )


async def _rows(bot) -> list[outbox_repo.OutboxRow]:
    from sqlalchemy import select

    from storage.tables import outbox

    async with bot.db.read() as conn:
        ids = [r.id for r in await conn.execute(select(outbox.c.id).order_by(outbox.c.id))]
        rows = []
        for row_id in ids:
            result = await conn.execute(select(outbox).where(outbox.c.id == row_id))
            rows.append(outbox_repo._row(result.one()))
        return rows


def _outgoing(row: outbox_repo.OutboxRow):
    from bot.delivery import Outgoing

    return Outgoing(
        target=row.target,
        message=row.message,
        key=row.key,
        ephemeral_to=row.ephemeral_to,
        message_key=row.message_key,
    )
