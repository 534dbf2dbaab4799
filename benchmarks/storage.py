"""storage: filing, triaging, !status and card rendering with 100,000 existing tips, on
SQLite, and on PostgreSQL when FUSIONBOT_BENCH_DATABASE_URL (or
FUSIONBOT_TEST_DATABASE_URL) names a server; and the RSS of the bot process.

Baseline: the same operations on an empty database, in the same run; ratio = with 100k ÷
empty, per operation (p50), the worst of them counting. On PostgreSQL the benchmark makes a
database of its own on that server (``fusionbot_bench_<pid>_…``) and drops it afterwards.

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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.common import ROOT, Comparison, Result

NAME = "storage"
GOAL = 1.5
TIPS = int(os.environ.get("FUSIONBOT_BENCH_TIPS", "100000"))
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
    name = f"fusionbot_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    await _admin(server, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(server: str, statement: str) -> None:
    engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def run_backend(backend: str, tmp: Path) -> dict[str, Any]:
    """Seed and measure an empty and a TIPS-tip database on one backend."""
    out: dict[str, Any] = {}
    for label, count in (("empty", 0), ("seeded", TIPS)):
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp / f'{label}.db'}"
            seeded = worker("seed", url, count)
            out[label] = {"seed": seeded, **worker("measure", url, count)}
            continue
        server = postgres_server()
        name = f"fusionbot_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
        try:
            url = make_url(server).set(database=name).render_as_string(hide_password=False)
            seeded = worker("seed", url, count)
            out[label] = {"seed": seeded, **worker("measure", url, count)}
        finally:
            asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return out


def run() -> Result:
    backends = ["sqlite"] + (["postgresql"] if postgres_server() else [])
    figures: dict[str, Any] = {"tips": TIPS}
    baseline: dict[str, Any] = {"tips": 0}
    comparisons: list[Comparison] = []
    notes = [f"ratio: the worst of each operation's p50 with {TIPS:,} tips ÷ empty"]
    if "postgresql" not in backends:
        notes.append("PostgreSQL skipped: set FUSIONBOT_BENCH_DATABASE_URL to include it")
    with tempfile.TemporaryDirectory(prefix="fusionbot-bench-") as tmp:
        for backend in backends:
            started = time.monotonic()
            data = run_backend(backend, Path(tmp))
            seeded, empty = data["seeded"], data["empty"]
            figures[backend] = {
                "ops": seeded["ops"],
                "rss_mib": seeded.get("rss_mib"),
                "peak_rss_mib": seeded.get("peak_rss_mib"),
                "seed_s": seeded["seed"]["seconds"],
            }
            baseline[backend] = {
                "ops": empty["ops"],
                "rss_mib": empty.get("rss_mib"),
                "peak_rss_mib": empty.get("peak_rss_mib"),
            }
            for op, timing in seeded["ops"].items():
                comparisons.append(
                    Comparison(
                        f"{backend}: {op} p50",
                        timing["p50_ms"],
                        empty["ops"].get(op, {}).get("p50_ms"),
                        "ms",
                        counts=op in COUNTED,
                    )
                )
            comparisons.append(
                Comparison(
                    f"{backend}: bot RSS after the run",
                    seeded.get("rss_mib"),
                    empty.get("rss_mib"),
                    "MiB",
                    counts=True,
                )
            )
            comparisons.append(
                Comparison(
                    f"{backend}: seeding {TIPS:,} tips", seeded["seed"]["seconds"], None, "s"
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
