"""Count what one filed tip costs: statements, round trips, checkouts, pings, transactions,
and CPU, in-process (bot.app.build, console sender, a policy with one review channel).

    .venv/bin/python -m benchmarks.round_trips [URL [N]]   # no URL: SQLite in a temp dir

URL: sqlite+aiosqlite:///path or postgresql+asyncpg://.../server_db (a private database is
created on that server and dropped after). Tips are filed as the Slack path files them (a
source key per request), then the worker delivers card and receipt (drain)."""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import tempfile
import time
from typing import Any

from sqlalchemy import event

RT: collections.Counter[str] = collections.Counter()


def patch_asyncpg() -> None:
    """Count the round trips the asyncpg adapter makes: a measuring instrument wrapped
    around SQLAlchemy's private adapter methods (as in SQLAlchemy 2.0), never used by the
    bot; should they be renamed, this fails loudly here rather than count wrong."""
    from sqlalchemy.dialects.postgresql import asyncpg as sa_pg

    conn_cls = sa_pg.AsyncAdapt_asyncpg_connection
    cur_cls = sa_pg.AsyncAdapt_asyncpg_cursor

    def wrap(cls: Any, name: str, label: str) -> None:
        original = getattr(cls, name)

        async def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            RT[label] += 1
            return await original(self, *args, **kwargs)

        setattr(cls, name, wrapped)

    original_begin = conn_cls._start_transaction

    async def begin(self: Any) -> Any:
        if self.isolation_level != "autocommit":
            RT["BEGIN"] += 1
        return await original_begin(self)

    conn_cls._start_transaction = begin
    wrap(conn_cls, "_async_ping", "ping (BEGIN + ; + ROLLBACK = 3 round trips)")
    wrap(cur_cls, "_executemany", "executemany")
    wrap(cur_cls, "_prepare_and_execute", "execute")

    original_prepare = conn_cls._prepare

    async def prepare(self: Any, operation: str, invalidate: Any) -> Any:
        cache = self._prepared_statement_cache
        if cache is None or operation not in cache:
            RT["prepare (cache miss)"] += 1
        return await original_prepare(self, operation, invalidate)

    conn_cls._prepare = prepare

    for name, label in (("commit", "COMMIT"), ("rollback", "ROLLBACK")):
        original = getattr(conn_cls, name)

        def make(original: Any, label: str) -> Any:
            def wrapped(self: Any) -> Any:
                if self._transaction is not None:
                    RT[label] += 1
                return original(self)

            return wrapped

        setattr(conn_cls, name, make(original, label))


async def backend_cpu(url: str) -> dict[int, float]:
    """CPU seconds of each server process serving this database (PostgreSQL only)."""
    if not url.startswith("postgresql"):
        return {}
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    name = make_url(url).database
    engine = create_async_engine(make_url(url).set(database="postgres"))
    try:
        async with engine.connect() as conn:
            pids = list(
                await conn.scalars(
                    text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": name}
                )
            )
    finally:
        await engine.dispose()
    return {pid: _cpu_seconds(pid) for pid in pids}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc (Linux)."""
    import os

    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(url: str, n: int) -> dict[str, Any]:
    from adapters.console.sender import ConsoleSender
    from bot.app import build
    from bot.settings import Settings
    from commands.context import Command
    from storage.db import Database
    from tests.policies import ONE_REVIEW_POLICY, console_policy

    printed: list[str] = []
    db = Database(url)
    bot = build(
        Settings.from_environ({}),
        policy=console_policy(ONE_REVIEW_POLICY),
        senders={"console": ConsoleSender(printed.append)},
        database=db,
    )
    statements: collections.Counter[str] = collections.Counter()
    counts: collections.Counter[str] = collections.Counter()
    sync_engine = db.engine.sync_engine

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _stmt(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        statements[" ".join(statement.split())[:70]] += 1

    @event.listens_for(sync_engine, "checkout")
    def _checkout(*_: Any) -> None:
        counts["checkouts"] += 1

    @event.listens_for(sync_engine, "commit")
    def _commit(*_: Any) -> None:
        counts["transactions committed"] += 1

    await bot.start(schedule=False)
    try:
        seq = 0

        async def file(i: int) -> None:
            nonlocal seq
            seq += 1
            await bot.handle(
                Command(
                    actor=f"console:off{i % 7}",
                    channel="console:#tips",
                    text=f"!tip Person photographing the substation fence {i} with a tripod "
                    f"| category: photo | location: gate {i}",
                    source_key=f"slack:trigger:{seq}",
                )
            )

        for i in range(30):  # warm up: prepared statements on every pooled connection
            await file(i)
        await bot.drain(10.0)
        statements.clear()
        counts.clear()
        RT.clear()
        backends0 = await backend_cpu(url)
        # Filing alone (handle), then delivery (drain), counted apart.
        cpu0, wall0 = time.process_time(), time.perf_counter()
        handle_wall = handle_cpu = 0.0
        filing_rt: collections.Counter[str] = collections.Counter()
        filing_stmt: collections.Counter[str] = collections.Counter()
        filing_counts: collections.Counter[str] = collections.Counter()
        for i in range(n):
            before_rt, before_st, before_c = RT.copy(), statements.copy(), counts.copy()
            began, began_cpu = time.perf_counter(), time.process_time()
            await file(1000 + i)
            handle_wall += time.perf_counter() - began
            handle_cpu += time.process_time() - began_cpu
            filing_rt.update(RT - before_rt)
            filing_stmt.update(statements - before_st)
            filing_counts.update(counts - before_c)
            await bot.drain(10.0)  # its card and receipt go out before the next tip
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
        backends1 = await backend_cpu(url)
    finally:
        await bot.stop()

    def per(counter: collections.Counter[str]) -> dict[str, float]:
        return {k: round(v / n, 2) for k, v in counter.most_common()}

    return {
        "tips": n,
        "cpu_ms_per_tip (filing + delivery)": round(cpu / n * 1000, 3),
        "wall_ms_per_tip (filing + delivery)": round(wall / n * 1000, 3),
        "handle_wall_ms_per_tip": round(handle_wall / n * 1000, 3),
        "handle_cpu_ms_per_tip": round(handle_cpu / n * 1000, 3),
        "postgres_backends_cpu_ms_per_tip": round(
            sum(backends1.get(p, 0) - backends0.get(p, 0) for p in backends1) / n * 1000, 3
        ),
        "filing: round trips per tip (asyncpg)": per(filing_rt),
        "filing: statements per tip": per(filing_stmt),
        "filing: checkouts/transactions per tip": per(filing_counts),
        "filing+delivery: round trips per tip": per(RT),
        "filing+delivery: statements per tip": per(statements),
        "filing+delivery: checkouts/transactions per tip": per(counts),
    }


async def main(url: str, n: int) -> None:
    if url.startswith("postgresql"):
        patch_asyncpg()
        from benchmarks.storage import postgres_database

        async with postgres_database(url) as private:
            result = await measure(private, n)
    else:
        result = await measure(url, n)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else ""
    if not target:
        target = f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/count.db"
    asyncio.run(main(target, int(sys.argv[2]) if len(sys.argv) > 2 else 200))
