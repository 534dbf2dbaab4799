"""The embedded database's connections (storage/sqlite_driver.py) behave as aiosqlite's
do for everything the bot relies on: results of any size, streamed results, errors that
leave nothing written, many rows at once, RETURNING, waiting for another process's lock
(without holding up the event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, func, select
from sqlalchemy.exc import IntegrityError

from storage.db import Database
from storage.sqlite_driver import PREFETCH, InlineConnection

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with database.transaction() as conn:
        await conn.run_sync(metadata.create_all)
    yield database
    await database.dispose()


class LoopWatch:
    longest_stall = 0.0  # the longest the event loop went without giving others a turn


@contextlib.asynccontextmanager
async def watching_the_loop() -> AsyncIterator[LoopWatch]:
    watch = LoopWatch()

    async def tick() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0)
            watch.longest_stall = max(watch.longest_stall, loop.time() - before)

    ticking = asyncio.create_task(tick())
    await asyncio.sleep(0.01)  # ticking
    try:
        yield watch
    finally:
        ticking.cancel()


async def add(db: Database, count: int, *, start: int = 0) -> None:
    if count == start:
        return
    async with db.transaction() as conn:
        await conn.execute(items.insert(), [{"name": f"item {i}"} for i in range(start, count)])


async def test_the_engine_uses_the_inline_connections(db: Database) -> None:
    async with db.read() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.driver_connection, InlineConnection)


@pytest.mark.parametrize("count", [0, 1, PREFETCH - 1, PREFETCH, PREFETCH + 1, 2 * PREFETCH + 7])
async def test_every_row_comes_back_in_order_whatever_the_size(db: Database, count: int) -> None:
    await add(db, count)
    async with db.read() as conn:
        names = (await conn.execute(select(items.c.name).order_by(items.c.id))).scalars().all()
        first = (await conn.execute(select(items.c.name).order_by(items.c.id))).first()
    assert names == [f"item {i}" for i in range(count)]
    assert first == (("item 0",) if count else None)


async def test_a_streamed_result_larger_than_one_fetch_arrives_whole(db: Database) -> None:
    # `fusionbot audit verify` streams the log in batches like this.
    count = 3 * PREFETCH + 11
    await add(db, count)
    seen: list[int] = []
    async with db.read() as conn:
        result = await conn.stream(
            select(items.c.id).order_by(items.c.id).execution_options(yield_per=250)
        )
        async for partition in result.partitions():
            assert len(partition) <= 250
            seen.extend(row.id for row in partition)
    assert seen == list(range(1, count + 1))


async def test_a_result_left_half_read_does_not_block_the_next_statement(db: Database) -> None:
    await add(db, 2 * PREFETCH)
    async with db.transaction() as conn:
        result = await conn.stream(select(items.c.id).execution_options(yield_per=10))
        await result.fetchmany(3)
        await result.close()
        await conn.execute(items.insert().values(name="after"))
    async with db.read() as conn:
        assert (
            await conn.execute(select(func.count()).select_from(items))
        ).scalar() == 2 * PREFETCH + 1


async def test_a_failing_statement_raises_and_leaves_nothing_of_its_transaction(
    db: Database,
) -> None:
    await add(db, 1)
    with pytest.raises(IntegrityError):
        async with db.transaction() as conn:
            await conn.execute(items.insert().values(name="new one"))
            await conn.execute(items.insert().values(name="item 0"))  # taken
    async with db.read() as conn:
        names = (await conn.execute(select(items.c.name))).scalars().all()
    assert names == ["item 0"]


async def test_insert_returning_and_row_counts(db: Database) -> None:
    async with db.transaction() as conn:
        inserted = (
            await conn.execute(items.insert().values(name="returned").returning(items.c.id))
        ).scalar_one()
        await conn.execute(items.insert(), [{"name": name} for name in ["a", "b", "c"]])
        updated = await conn.execute(
            items.update().where(items.c.name.in_(["a", "b"])).values(name=items.c.name + "!")
        )
    assert inserted == 1
    assert updated.rowcount == 2


async def test_a_write_waits_for_another_process_lock_without_freezing_the_bot(
    db: Database, tmp_path: Path
) -> None:
    # Another process (a CLI command, say) holds the write lock for a moment. The bot's
    # write waits for it and then succeeds; meanwhile the event loop keeps serving others.
    other = sqlite3.connect(tmp_path / "driver.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO items (name) VALUES ('from the other process')")

    async def release_later() -> None:
        await asyncio.sleep(0.5)
        other.execute("COMMIT")

    releasing = asyncio.create_task(release_later())
    try:
        async with watching_the_loop() as watch:
            await add(db, 1)
    finally:
        await releasing
        other.close()
    assert watch.longest_stall < 0.2  # the loop ran throughout the half-second wait
    async with db.read() as conn:
        names = (await conn.execute(select(items.c.name).order_by(items.c.id))).scalars().all()
    assert names == ["from the other process", "item 0"]


async def test_a_long_run_of_statements_leaves_the_loop_free_between_them(db: Database) -> None:
    # A nightly purge or a big fan-out runs thousands of statements: acks and sends that
    # arrive meanwhile must not wait for all of them.
    async with watching_the_loop() as watch:
        began = asyncio.get_running_loop().time()
        async with db.transaction() as conn:
            for i in range(2000):
                await conn.execute(items.insert().values(name=f"row {i}"))
        took = asyncio.get_running_loop().time() - began
    assert took > 0.1  # long enough that a blocked loop would show
    assert watch.longest_stall < took / 10, (watch.longest_stall, took)
