"""matrix_intake: an officer's `!tip` in a Matrix intake room until the review card is in
the review room, against a real Synapse on 127.0.0.1.

Ours: the bot (sync loop, dispatcher, database commit, outbox, sender) in this process on
SQLite. Baseline: a bare matrix-nio echo bot on the same homeserver, in the same process,
that answers every `!tip` in its intake room with one notice in its review room — nothing
else. Tips are sent one at a time; latency is from the officer's send to the moment an
analyst's client sees the card. Both bots run throughout and take turns in blocks of
tips (ours, the bare bot's, ours, …), with a pause between blocks for whatever a bot does
after answering, so a change in the machine's load falls on both alike. Ratio: ours ÷
baseline at the median; goal 1.5."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from nio import RoomMessageText

from benchmarks.common import Comparison, Result, summary_ms
from benchmarks.matrix_common import (
    Watcher,
    person,
    register_bot,
    running_bot,
    synapse_server,
    until,
)
from tests.matrix_server.fixtures import make_client

NAME = "matrix_intake"
GOAL = 1.5
TIPS = 40
WARMUP = 3
BLOCK = 10  # tips per turn
# Between turns: longer than anything a bot does after its answer (ours saves its sync
# position a second after a batch), so neither turn pays for the other's.
PAUSE = 1.5

POLICY = """
[center]
name = "Benchmark Fusion Center"
timezone = "America/New_York"
regions = ["north"]

[roles]
officers = ["*"]
analysts = ["matrix:{analyst}"]

[[intake]]
channels = ["matrix:{intake}"]

[[review]]
name = "general"
channels = ["matrix:{review}"]
"""


async def measure(  # type: ignore[no-untyped-def]
    officer, watcher: Watcher, intake: str, review: str, first: int, count: int
) -> list[float]:
    latencies = []
    for n in range(first, first + count):
        before = len(watcher.arrivals.get(review, []))
        await officer.sync()
        started = time.monotonic()
        await officer.client.room_send(
            intake,
            "m.room.message",
            {"msgtype": "m.text", "body": f"!tip Benchmark tip {n} near the depot"},
            ignore_unverified_devices=True,
        )
        await until(lambda b=before: len(watcher.arrivals.get(review, [])) > b, seconds=30)
        latencies.append(watcher.arrivals[review][-1][0] - started)
    return latencies


async def scenario() -> Result:
    with synapse_server() as server, tempfile.TemporaryDirectory() as tmp:
        bot_user, password = await register_bot(server)
        officer, analyst = await person(server, "officer"), await person(server, "analyst")
        echo = await make_client(server, "echo")
        intake = await officer.create_room("tips", [bot_user, analyst.user_id])
        review = await officer.create_room("review", [bot_user, analyst.user_id])
        bare_intake = await officer.create_room("bare tips", [echo.user_id, analyst.user_id])
        bare_review = await officer.create_room("bare review", [echo.user_id, analyst.user_id])
        for room in (intake, review, bare_intake, bare_review):
            await analyst.join(room)
        for room in (bare_intake, bare_review):
            await echo.join(room)
        policy = POLICY.format(analyst=analyst.user_id, intake=intake, review=review)

        # The bare echo bot.
        await echo.sync(timeout=0, full_state=True)

        async def answer(room: object, event: RoomMessageText) -> None:
            if getattr(room, "room_id", "") == bare_intake and event.body.startswith("!tip"):
                await echo.room_send(
                    bare_review,
                    "m.room.message",
                    {"msgtype": "m.notice", "body": "card: " + event.body[5:]},
                    ignore_unverified_devices=True,
                )

        echo.add_event_callback(answer, RoomMessageText)  # type: ignore[arg-type]
        echo_task = asyncio.create_task(echo.sync_forever(timeout=30_000))
        watcher = Watcher(analyst.client, bot_user, also=(echo.user_id,))
        await watcher.start()
        ours: list[float] = []
        baseline: list[float] = []
        async with running_bot(server, bot_user, password, policy, Path(tmp)):
            await measure(officer, watcher, intake, review, 0, WARMUP)
            await measure(officer, watcher, bare_intake, bare_review, 0, WARMUP)
            done = 0
            while done < TIPS:
                count = min(BLOCK, TIPS - done)
                for rooms, into in (
                    ((intake, review), ours),
                    ((bare_intake, bare_review), baseline),
                ):
                    await asyncio.sleep(PAUSE)
                    into += await measure(officer, watcher, *rooms, WARMUP + done, count)
                done += count
        await watcher.stop()
        echo_task.cancel()
        for client in (officer.client, analyst.client, echo):
            await client.close()

    ours_ms, base_ms = summary_ms(ours), summary_ms(baseline)
    return Result(
        name=NAME,
        goal=GOAL,
        comparisons=[
            Comparison("tip → card p50", ours_ms["p50_ms"], base_ms["p50_ms"], "ms", counts=True),
            Comparison("tip → card p95", ours_ms["p95_ms"], base_ms["p95_ms"], "ms"),
            Comparison("tip → card max", ours_ms["max_ms"], base_ms["max_ms"], "ms"),
        ],
        figures={"tips": TIPS, "latency_ms": ours_ms},
        baseline={"what": "bare matrix-nio echo bot, same homeserver", "latency_ms": base_ms},
        notes=[
            f"{TIPS} tips one at a time after {WARMUP} warm-up tips, in turns of {BLOCK} "
            "with the bare bot; Synapse 127.0.0.1"
        ],
    )


def run() -> Result:
    return asyncio.run(scenario())
