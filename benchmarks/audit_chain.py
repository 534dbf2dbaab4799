"""audit_chain: what chaining the audit log costs an action, alone and ten at once.

Every audited action (a tip filed, a claim, an approval, a release …) writes its own rows
and appends one entry to the chain in the same transaction. The chain is one sequence
(each entry numbered after, and hashed over, the one before), so its appenders must take
turns; this measures how much that costs. Ours: a transaction that writes one row (the
action) and appends its audit entry, then commits. Baseline: the same transaction writing
the same entry to a plain log table (numbered by the database, no chain, no head), in the
same run, on the same database. At
concurrency 1 and 10, as many transactions each, in ABBA order (baseline, ours, ours,
baseline; the timings of each pooled) so that a database warming up or filling favours
neither. On SQLite (a file) and, with FUSIONBOT_BENCH_DATABASE_URL (or
FUSIONBOT_TEST_DATABASE_URL) naming a server, PostgreSQL (a database of its own).

The run is valid only if the chain verifies afterwards and holds exactly one entry per
audited transaction."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Integer, MetaData, String, Table, insert

from benchmarks.common import Comparison, Result, closed_loop, summary_ms
from benchmarks.storage import postgres_database, postgres_server
from storage.audit_repo import append_audit, verify_audit
from storage.db import Database
from storage.tables import bot_state

NAME = "audit_chain"
GOAL = 1.5
LEVELS = {1: 300, 10: 1000}  # concurrency: transactions, per measurement

_serial = itertools.count()

# The bare log: what an audit table without a chain would be.
_plain = MetaData()
plain_log = Table(
    "bench_plain_audit_log",
    _plain,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("details", JSON, nullable=False),
)


async def _transaction(db: Database, chained: bool) -> float:
    n = next(_serial)
    entry = {
        "at": datetime.now(UTC),
        "actor": "slack:UBENCH",
        "action": "tip.claimed",
        "subject": f"T-{n}",
        "details": {"n": n, "by": "benchmark"},
    }
    began = time.perf_counter()
    async with db.transaction() as conn:
        await conn.execute(insert(bot_state).values(key=f"action-{n}", value="done"))
        if chained:
            await append_audit(conn, **entry)
        else:
            await conn.execute(insert(plain_log).values(**entry))
    return time.perf_counter() - began


async def _measure(
    db: Database, chained: bool, concurrency: int, count: int
) -> tuple[list[float], float]:
    return await closed_loop(count, concurrency, lambda _: _transaction(db, chained))


async def _backend(url: str) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    db = Database(url)
    problems: list[str] = []
    ours: dict[str, Any] = {}
    bare: dict[str, Any] = {}
    audited = 0
    try:
        await db.upgrade()
        async with db.transaction() as conn:
            await conn.run_sync(_plain.create_all)
        for chained in (True, False):  # warm up: connections, statements, the head
            await _measure(db, chained, 10, 100)
        audited += 100
        for concurrency, count in LEVELS.items():
            timings: dict[bool, list[float]] = {True: [], False: []}
            walls: dict[bool, float] = {True: 0.0, False: 0.0}
            for chained in (False, True, True, False):
                latencies, wall = await _measure(db, chained, concurrency, count)
                timings[chained] += latencies
                walls[chained] += wall
                audited += count if chained else 0
            for figures, chained in ((ours, True), (bare, False)):
                figures[f"c{concurrency}"] = {
                    "transaction": summary_ms(timings[chained]),
                    "per_s": round(2 * count / walls[chained], 1),
                }
        async with db.read() as conn:
            report = await verify_audit(conn)
        if not report.ok or report.checked != audited:
            problems.append(
                f"chain: {report.checked} entries for {audited} audited transactions; "
                + "; ".join(report.problems[:3])
            )
    finally:
        await db.dispose()
    return ours, bare, problems


@contextlib.asynccontextmanager
async def _sqlite() -> AsyncIterator[str]:
    with tempfile.TemporaryDirectory(prefix="fusionbot-bench-") as tmp:
        yield f"sqlite+aiosqlite:///{Path(tmp) / 'audit.db'}"


def _compare(ours: dict[str, Any], bare: dict[str, Any], prefix: str) -> list[Comparison]:
    rows = []
    for concurrency in LEVELS:
        m, b = ours[f"c{concurrency}"], bare[f"c{concurrency}"]
        for p in ("p50", "p95"):
            rows.append(
                Comparison(
                    f"{prefix}transaction {p}, concurrency {concurrency}",
                    m["transaction"][f"{p}_ms"],
                    b["transaction"][f"{p}_ms"],
                    "ms",
                    counts=p == "p95",
                )
            )
        rows.append(
            Comparison(
                f"{prefix}transactions/s, concurrency {concurrency}",
                m["per_s"],
                b["per_s"],
                "/s",
                counts=True,
                higher_is_better=True,
            )
        )
    return rows


async def bench() -> Result:
    figures: dict[str, Any] = {}
    baseline: dict[str, Any] = {}
    comparisons: list[Comparison] = []
    problems: list[str] = []
    backends = [("sqlite", _sqlite())]
    if postgres_server():
        backends.append(("postgresql", postgres_database(postgres_server())))
    for name, database in backends:
        async with database as url:
            ours, bare, found = await _backend(url)
        figures[name], baseline[name] = ours, bare
        comparisons += _compare(ours, bare, f"{name}: ")
        problems += [f"{name}: {p}" for p in found]
    return Result(
        name=NAME,
        goal=GOAL,
        comparisons=comparisons,
        figures=figures,
        baseline=baseline,
        notes=[
            "ours: write a row and append its entry to the chain; baseline: write the row "
            "and the entry to a plain log table",
            "ratio: the worst of transaction p95 and transactions/s at concurrency 1 and 10"
            + (", SQLite and PostgreSQL" if len(backends) > 1 else " (SQLite)"),
            *problems[:5],
        ],
        ok=not problems,
    )


def run() -> Result:
    return asyncio.run(bench())
