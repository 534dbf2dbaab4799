"""slack_intake: correctly signed /tip requests against the real `fusionbot run` process
(HTTP mode, the Slack Web API at the suite's fake), at concurrency 1, 10 and 50.

Measures the ack latency (p50/p95/p99), requests/s, and the end-to-end time from sending
/tip until its review card reaches the fake. Baseline: a bare bolt AsyncApp that acks and
posts one message (benchmarks/bare_bolt.py), as its own process, on the same fake.

The fake's per-channel pace is lifted here (this benchmark is about intake; `burst` is
about the pace), but the bot still paces itself at ~1 message/s per channel, as Slack
asks. So that the pace doesn't turn this into a pacing benchmark, tips are spread over the
17 categories, each routed to its own review channel, and officers file from 50 intake
channels (their receipts are paced per channel too). End to end is measured one tip at a
time, one per category, so no card waits for the pace.

With FUSIONBOT_BENCH_DATABASE_URL (or FUSIONBOT_TEST_DATABASE_URL) naming a PostgreSQL
server, the bot is measured a second time on a database of its own on that server
(created and dropped as by the storage benchmark), against the same bare app: PostgreSQL
is the production database, where commits don't queue behind SQLite's one writer.

A second, informative baseline (never in the ratio): the *durable* bare app, doing the
least the design asks: it commits each request as one row through the bot's database
layer before acking, then posts the card and the officer's receipt together (bare_bolt.py
--database-url), on the same database kind. The bot against it shows how much of the gap
is the design itself (committed before the officer is told; a receipt) and how much is the
bot's own work."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from benchmarks.common import Comparison, Result, closed_loop, summary_ms
from benchmarks.slack_common import (
    Slack,
    TimedSlack,
    bare_bolt,
    fusionbot_run,
    until,
)
from benchmarks.storage import postgres_database, postgres_server
from bot.categories import CATEGORIES

NAME = "slack_intake"
GOAL = 1.5
LEVELS = {1: 50, 10: 200, 50: 300}  # concurrency: requests
INTAKE = [f"C0TIPS{i:02d}" for i in range(50)]
CODES = list(CATEGORIES)
REVIEW = [f"C0R{code}" for code in CODES]
ACK_BUDGET = 3.0


def policy() -> str:
    reviews = "\n".join(
        f'[[review]]\nname = "{code.lower()}"\nchannels = ["slack:C0R{code}"]\n'
        f'categories = ["{code}"]\n'
        for code in CODES
    )
    intake = ", ".join(f'"slack:{c}"' for c in INTAKE)
    return f"""
[center]
name = "Benchmark Fusion Center"
timezone = "America/New_York"
regions = ["north", "south", "downtown"]

[roles]
officers = ["*"]
analysts = ["slack:UANA"]
supervisors = ["slack:USAM"]
admins = ["slack:USAM"]

[[intake]]
channels = [{intake}]

{reviews}
[[review]]
name = "general"
channels = ["slack:C0REVIEW"]
categories = ["*"]
"""


async def file_tip(slack: Slack, fake: TimedSlack, n: int) -> tuple[int, str, float]:
    code = CODES[n % len(CODES)]
    return await slack.command(
        "/tip",
        f"Intake {n}: person photographing the substation fence | category: {code} "
        f"| location: gate {n}",
        user=f"UOFF{n % 500:03d}",
        channel=INTAKE[n % len(INTAKE)],
        trigger_id=fake.issue_trigger_id(),
    )


class Problems(list[str]):
    def check(self, answer: tuple[int, str, float]) -> float:
        status, body, latency = answer
        if status != 200 or body != "" or latency >= ACK_BUDGET:
            self.append(f"not acked in time: {status} {body[:80]!r} {latency:.2f}s")
        return latency


async def measure(
    start: Callable[[Path, TimedSlack], AbstractAsyncContextManager[Slack]],
    tmp: Path,
    *,
    wait_for_receipts: bool,
) -> tuple[dict[str, Any], Problems]:
    problems = Problems()
    figures: dict[str, Any] = {}
    async with TimedSlack(per_channel_per_second=1000.0, burst=1000) as fake:
        async with start(tmp, fake) as slack:
            sent = 0

            async def one(n: int) -> float:
                return problems.check(await file_tip(slack, fake, n))

            # Warm up: a few tips, carded, so the first measured request meets a warm process.
            for _ in range(3):
                await one(sent)
                sent += 1
            await until(lambda: fake.arrived(REVIEW) >= sent, seconds=30)
            # The last end-to-end tips go to the warm-up's review channels again: past their
            # pace (1 message/s), so that no card waits for it.
            await asyncio.sleep(1.1)

            # End to end, one tip at a time, each to a review channel no card waits for.
            e2e: list[float] = []
            for _ in CODES:
                channel = REVIEW[sent % len(CODES)]
                before = fake.arrived([channel])
                began = time.monotonic()
                await one(sent)
                sent += 1
                await until(lambda channel=channel, before=before: fake.arrived([channel]) > before)
                e2e.append(fake.arrivals[channel][before][0] - began)
            figures["end_to_end"] = summary_ms(e2e)

            for concurrency, requests in LEVELS.items():
                first = sent
                began = time.monotonic()
                latencies, wall = await closed_loop_from(first, requests, concurrency, one)
                sent += requests
                # Every card of the phase arrived (the bot paces them; the bare app doesn't).
                await until(lambda sent=sent: fake.arrived(REVIEW) >= sent, seconds=120)
                cards_done = fake.last_arrival(REVIEW) - began
                figures[f"c{concurrency}"] = {
                    "ack": summary_ms(latencies),
                    "requests_per_s": round(requests / wall, 1),
                    "all_cards_s": round(cards_done, 2),
                }
            if fake.arrived(REVIEW) != sent:
                problems.append(f"{fake.arrived(REVIEW)} cards for {sent} tips")
            if wait_for_receipts:
                await until(
                    lambda: sum(len(fake.ephemerals(c)) for c in INTAKE) >= sent, seconds=120
                )
    return figures, problems


async def closed_loop_from(
    first: int, requests: int, concurrency: int, one: Callable[[int], Awaitable[float]]
) -> tuple[list[float], float]:
    return await closed_loop(requests, concurrency, lambda i: one(first + i))


@contextlib.asynccontextmanager
async def ours(tmp: Path, fake: TimedSlack) -> AsyncIterator[Slack]:
    async with fusionbot_run(tmp, fake, policy()) as (slack, _, _):
        yield slack


@contextlib.asynccontextmanager
async def ours_on_postgresql(tmp: Path, fake: TimedSlack) -> AsyncIterator[Slack]:
    async with (
        postgres_database(postgres_server()) as url,
        fusionbot_run(tmp, fake, policy(), env={"FUSIONBOT_DATABASE_URL": url}) as (slack, _, _),
    ):
        yield slack


@contextlib.asynccontextmanager
async def baseline(tmp: Path, fake: TimedSlack) -> AsyncIterator[Slack]:
    async with bare_bolt(tmp, fake) as (slack, _):
        yield slack


@contextlib.asynccontextmanager
async def durable_baseline(tmp: Path, fake: TimedSlack) -> AsyncIterator[Slack]:
    url = f"sqlite+aiosqlite:///{tmp / 'requests.db'}"
    async with bare_bolt(tmp, fake, "--database-url", url) as (slack, _):
        yield slack


@contextlib.asynccontextmanager
async def durable_baseline_on_postgresql(tmp: Path, fake: TimedSlack) -> AsyncIterator[Slack]:
    async with (
        postgres_database(postgres_server()) as url,
        bare_bolt(tmp, fake, "--database-url", url) as (slack, _),
    ):
        yield slack


async def bench() -> Result:
    with tempfile.TemporaryDirectory(prefix="fusionbot-bench-") as tmp:
        for part in ("ours", "bare", "durable", "pg", "durable-pg"):
            (Path(tmp) / part).mkdir()
        mine, my_problems = await measure(ours, Path(tmp) / "ours", wait_for_receipts=True)
        bare, bare_problems = await measure(baseline, Path(tmp) / "bare", wait_for_receipts=False)
        durable, durable_problems = await measure(
            durable_baseline, Path(tmp) / "durable", wait_for_receipts=True
        )
        bare_problems += durable_problems
        on_pg: dict[str, Any] | None = None
        durable_pg: dict[str, Any] = {}
        if postgres_server():
            on_pg, pg_problems = await measure(
                ours_on_postgresql, Path(tmp) / "pg", wait_for_receipts=True
            )
            my_problems += [f"postgresql: {problem}" for problem in pg_problems]
            durable_pg, durable_pg_problems = await measure(
                durable_baseline_on_postgresql, Path(tmp) / "durable-pg", wait_for_receipts=True
            )
            bare_problems += durable_pg_problems
    comparisons = compare(mine, bare) + against_durable(mine, durable)
    if on_pg is not None:
        comparisons += compare(on_pg, bare, prefix="postgresql: ")
        comparisons += against_durable(on_pg, durable_pg, prefix="postgresql: ")
        mine = {**mine, "postgresql": on_pg}
        durable = {**durable, "postgresql": durable_pg}
    problems = my_problems + bare_problems
    return Result(
        name=NAME,
        goal=GOAL,
        comparisons=comparisons,
        figures=mine,
        baseline={**bare, "durable": durable},
        notes=[
            "ratio: the worst of end-to-end p50 and ack p95 at each concurrency"
            + (", on SQLite and on PostgreSQL" if on_pg is not None else " (SQLite)"),
            "'vs durable bare': against a bare app that commits each request before acking, "
            "then posts the card and the receipt (informative, not in the ratio)",
            *problems[:5],
        ],
        ok=not problems,
    )


def compare(mine: dict[str, Any], bare: dict[str, Any], prefix: str = "") -> list[Comparison]:
    comparisons = [
        Comparison(
            f"{prefix}end to end /tip → card, p50",
            mine["end_to_end"]["p50_ms"],
            bare["end_to_end"]["p50_ms"],
            "ms",
            counts=True,
        ),
        Comparison(
            f"{prefix}end to end /tip → card, p95",
            mine["end_to_end"]["p95_ms"],
            bare["end_to_end"]["p95_ms"],
            "ms",
        ),
    ]
    for concurrency in LEVELS:
        m, b = mine[f"c{concurrency}"], bare[f"c{concurrency}"]
        for p in ("p50", "p95", "p99"):
            comparisons.append(
                Comparison(
                    f"{prefix}ack {p}, concurrency {concurrency}",
                    m["ack"][f"{p}_ms"],
                    b["ack"][f"{p}_ms"],
                    "ms",
                    counts=p == "p95",
                )
            )
        comparisons.append(
            Comparison(
                f"{prefix}requests/s, concurrency {concurrency}",
                m["requests_per_s"],
                b["requests_per_s"],
                "/s",
                higher_is_better=True,
            )
        )
        comparisons.append(
            Comparison(
                f"{prefix}all cards arrived, concurrency {concurrency}",
                m["all_cards_s"],
                b["all_cards_s"],
                "s",
                note="bot paces 1 msg/s per channel",
            )
        )
    return comparisons


def against_durable(
    mine: dict[str, Any], durable: dict[str, Any], prefix: str = ""
) -> list[Comparison]:
    """The bot against the bare app that also commits before acking: never counted."""
    rows = [
        Comparison(
            f"{prefix}vs durable bare: end to end p50",
            mine["end_to_end"]["p50_ms"],
            durable["end_to_end"]["p50_ms"],
            "ms",
        )
    ]
    for concurrency in LEVELS:
        m, d = mine[f"c{concurrency}"], durable[f"c{concurrency}"]
        rows.append(
            Comparison(
                f"{prefix}vs durable bare: ack p95, concurrency {concurrency}",
                m["ack"]["p95_ms"],
                d["ack"]["p95_ms"],
                "ms",
            )
        )
        rows.append(
            Comparison(
                f"{prefix}vs durable bare: requests/s, concurrency {concurrency}",
                m["requests_per_s"],
                d["requests_per_s"],
                "/s",
                higher_is_better=True,
            )
        )
    return rows


def run() -> Result:
    return asyncio.run(bench())
