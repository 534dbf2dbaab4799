"""storage: filing, triaging, !status and card rendering with 100,000 existing tips, on
SQLite, and on PostgreSQL when FUSIONBOT_BENCH_DATABASE_URL (or
FUSIONBOT_TEST_DATABASE_URL) names a server; and the RSS of the bot process.

Baseline: the same operations, in the same run, on a database a tenth the size (10,000
tips of the same make-up): its open tips fill the similar-tips window (500) as the large
database's do, so a card shows similar tips on both and the two do the same work on
different amounts of history. Ratio = with 100k ÷ with a tenth, per operation (p50), the
worst of them counting. An empty database is measured too and shown (not counted): there a
card finds no similar tips, so it does less work, not the same work on less data. On
PostgreSQL each database is one of the benchmark's own on that server
(``fusionbot_bench_<pid>_…``), dropped afterwards.

Seeding and measuring are separate child processes (benchmarks/storage_worker.py), so the
measured process is the bot alone: its RSS is not the seeder's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.common import ROOT, Comparison, Result, summary_ms

NAME = "storage"
GOAL = 1.5
TIPS = int(os.environ.get("FUSIONBOT_BENCH_TIPS", "100000"))
# The baseline: the same make-up, a tenth of the history. About 5% of seeded tips are open,
# so from 10,000 tips on its open tips fill the similar-tips window as the large one's do.
BASELINE_TIPS = TIPS // 10
# The operations whose p50 counts towards the ratio (all of them: none may degrade).
COUNTED = (
    "file",
    "claim",
    "ask",
    "reply",
    "approve",
    "reject",
    "status (analyst queue)",
    "status (officer's tips)",
    "status T-n",
    "card render (new tip)",
)


def postgres_server() -> str:
    return os.environ.get("FUSIONBOT_BENCH_DATABASE_URL") or os.environ.get(
        "FUSIONBOT_TEST_DATABASE_URL", ""
    )


def worker(mode: str, url: str, count: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.storage_worker", mode, url, str(count)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"storage_worker {mode} failed:\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@contextlib.asynccontextmanager
async def postgres_database(server: str) -> AsyncIterator[str]:
    """A database of its own on ``server`` for one measurement (its URL), dropped after."""
    name = _new_name()
    await _admin(server, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _new_name() -> str:
    return f"fusionbot_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"


async def _admin(server: str, statement: str) -> None:
    engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def run_backend(backend: str, tmp: Path) -> dict[str, Any]:
    """Seed an empty, a BASELINE_TIPS-tip and a TIPS-tip database on one backend, then
    measure them: the empty one once, the other two twice in the order baseline, ours,
    ours, baseline, so a drift in the machine's speed during the run (a cache warming, a
    neighbour's load) falls on both alike; each operation's timings from both runs pooled."""
    sizes = {"empty": 0, "tenth": BASELINE_TIPS, "seeded": TIPS}
    with contextlib.ExitStack() as stack:
        urls = {label: stack.enter_context(_database(backend, tmp, label)) for label in sizes}
        out: dict[str, Any] = {
            label: {"seed": worker("seed", urls[label], count)} for label, count in sizes.items()
        }
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in sizes}
        for label in ("empty", "tenth", "seeded", "seeded", "tenth"):
            runs[label].append(worker("measure", urls[label], sizes[label]))
    for label, measured in runs.items():
        out[label].update(_pooled(measured))
    return out


@contextlib.contextmanager
def _database(backend: str, tmp: Path, label: str) -> Iterator[str]:
    """The URL of a new database for one size: a file on SQLite, a database of the
    benchmark's own on the PostgreSQL server (dropped afterwards)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp / f'{label}.db'}"
        return
    server = postgres_server()
    name = _new_name()
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One measurement from several runs of the same database: every operation's timings
    together; the RSS of the last run."""
    seconds: dict[str, list[float]] = {}
    for measured in runs:
        for op, values in measured["seconds"].items():
            seconds.setdefault(op, []).extend(values)
    last = runs[-1]
    return {
        "ops": {op: summary_ms(values) for op, values in seconds.items()},
        "rss_mib": last.get("rss_mib"),
        "peak_rss_mib": last.get("peak_rss_mib"),
    }


def run() -> Result:
    backends = ["sqlite"] + (["postgresql"] if postgres_server() else [])
    figures: dict[str, Any] = {"tips": TIPS}
    baseline: dict[str, Any] = {"tips": BASELINE_TIPS}
    comparisons: list[Comparison] = []
    notes = [
        f"ratio: the worst of each operation's p50 with {TIPS:,} tips ÷ with {BASELINE_TIPS:,}"
        " (open tips fill the similar-tips window in both)",
        "'vs empty': against an empty database, where a card finds no similar tips "
        "(informative, not in the ratio)",
    ]
    if "postgresql" not in backends:
        notes.append("PostgreSQL skipped: set FUSIONBOT_BENCH_DATABASE_URL to include it")
    with tempfile.TemporaryDirectory(prefix="fusionbot-bench-") as tmp:
        for backend in backends:
            started = time.monotonic()
            data = run_backend(backend, Path(tmp))
            seeded, tenth, empty = data["seeded"], data["tenth"], data["empty"]
            figures[backend] = {
                "ops": seeded["ops"],
                "rss_mib": seeded.get("rss_mib"),
                "peak_rss_mib": seeded.get("peak_rss_mib"),
                "seed_s": seeded["seed"]["seconds"],
                "open_tips": seeded["seed"].get("open"),
            }
            baseline[backend] = {
                "ops": tenth["ops"],
                "rss_mib": tenth.get("rss_mib"),
                "peak_rss_mib": tenth.get("peak_rss_mib"),
                "open_tips": tenth["seed"].get("open"),
                "empty": {
                    "ops": empty["ops"],
                    "rss_mib": empty.get("rss_mib"),
                    "peak_rss_mib": empty.get("peak_rss_mib"),
                },
            }
            for op, timing in seeded["ops"].items():
                comparisons.append(
                    Comparison(
                        f"{backend}: {op} p50",
                        timing["p50_ms"],
                        tenth["ops"].get(op, {}).get("p50_ms"),
                        "ms",
                        counts=op in COUNTED,
                    )
                )
            comparisons.append(
                Comparison(
                    f"{backend}: bot RSS after the run",
                    seeded.get("rss_mib"),
                    tenth.get("rss_mib"),
                    "MiB",
                    counts=True,
                )
            )
            comparisons.append(
                Comparison(
                    f"{backend}: seeding {TIPS:,} tips", seeded["seed"]["seconds"], None, "s"
                )
            )
            for op in COUNTED:
                if op in seeded["ops"] and op in empty["ops"]:
                    comparisons.append(
                        Comparison(
                            f"{backend}: {op} p50 vs empty",
                            seeded["ops"][op]["p50_ms"],
                            empty["ops"][op]["p50_ms"],
                            "ms",
                        )
                    )
            notes.append(f"{backend}: {time.monotonic() - started:.0f} s including seeding")
    return Result(
        name=NAME,
        goal=GOAL,
        comparisons=comparisons,
        figures=figures,
        baseline=baseline,
        notes=notes,
    )
