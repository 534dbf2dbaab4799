"""The scheduler's job store beside the bot's own SQLite transactions.

APScheduler 3 writes its job store synchronously, on the event loop's thread. A sweep
falling due while one of the bot's transactions waits for its next turn of the loop (every
filed tip does, between its statements) once froze the whole bot for 5 s — no acks, no
sends — then failed with "database is locked" and left APScheduler's timer stopped, so no
sweep ran again (found by benchmarks/burst). These tests hold a transaction open across
turns of the loop while the scheduler has work to do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.clock import SystemClock
from bot.core import Core, PolicyHolder
from bot.policy_loader import parse_policy
from bot.scheduler import BotScheduler
from storage.bot_state_repo import get_state, put_state
from storage.db import Database
from tests.test_alerts import ALERT_POLICY, alert_policy
from tests.test_sqlite_driver import watching_the_loop

SWEEP = 0.2  # seconds between sweeps here (15 s in the bot)


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    # SQLite on purpose: its one write lock is what the job store met (PostgreSQL locks rows).
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    await database.upgrade()
    yield database
    await database.dispose()


async def a_transaction_across_turns_of_the_loop(db: Database, seconds: float) -> None:
    """A write transaction that gives the loop turns while it holds the write lock, as a
    filed tip's does between statements (here for longer, so sweeps fall due meanwhile)."""
    async with db.transaction() as conn:
        for n in range(int(seconds / 0.05)):
            await put_state(conn, "in progress", str(n))
            await asyncio.sleep(0.05)


async def test_a_sweep_due_during_a_transaction_neither_freezes_the_bot_nor_stops(
    sqlite_db: Database,
) -> None:
    loop = asyncio.get_running_loop()
    swept: list[float] = []

    async def sweep(_core: Core) -> int:
        swept.append(loop.time())
        return 0

    core = Core(db=sqlite_db, policies=PolicyHolder(alert_policy(), "test"), clock=SystemClock())
    scheduler = BotScheduler(core, {"sla": sweep}, database_url=sqlite_db.url, sweep_seconds=SWEEP)
    async with watching_the_loop() as watch:
        await scheduler.start()
        try:
            began = loop.time()
            await a_transaction_across_turns_of_the_loop(sqlite_db, 5 * SWEEP)
            ended = loop.time()
            await asyncio.sleep(6 * SWEEP)
        finally:
            await scheduler.stop()
    # The bot went on answering throughout (before: 5 s without a turn).
    assert watch.longest_stall < 0.5, watch.longest_stall
    # The sweep that fell due during the transaction ran once it was over, and the sweeps
    # went on at their pace afterwards (before: none ever again).
    during_or_right_after = [t for t in swept if began < t <= ended + SWEEP]
    after = [t for t in swept if t > ended + SWEEP]
    assert during_or_right_after, swept
    assert len(after) >= 3, swept
    # And the transaction itself was committed.
    async with sqlite_db.read() as conn:
        assert await get_state(conn, "in progress") == str(int(5 * SWEEP / 0.05) - 1)


async def test_a_reload_during_a_transaction_declares_its_jobs_once_the_transaction_ends(
    sqlite_db: Database,
) -> None:
    async def nothing(_core: Core) -> int:
        return 0

    holder = PolicyHolder(alert_policy(), "test")
    core = Core(db=sqlite_db, policies=holder, clock=SystemClock())
    scheduler = BotScheduler(core, {"digests": nothing, "sla": nothing}, database_url=sqlite_db.url)
    await scheduler.start()
    try:
        assert "digest:transit" in scheduler.job_ids()
        renamed = ALERT_POLICY.replace('id = "transit"', 'id = "rail"')
        async with watching_the_loop() as watch:
            async with sqlite_db.transaction() as conn:
                await put_state(conn, "in progress", "yes")
                # A reload landing while another command's transaction is under way.
                holder.replace(parse_policy(renamed, "test-policy.toml"))
                await asyncio.sleep(0.3)
                assert "digest:rail" not in scheduler.job_ids()  # not yet: it waits
            for _ in range(20):
                if "digest:rail" in scheduler.job_ids():
                    break
                await asyncio.sleep(0.05)
        assert watch.longest_stall < 0.5, watch.longest_stall
        assert "digest:rail" in scheduler.job_ids()
        assert "digest:transit" not in scheduler.job_ids()
    finally:
        await scheduler.stop()
