"""matrix_intake: an officer's `!tip` in a Matrix intake room until the review card is in
the review room, against a real Synapse on 127.0.0.1.

Ours: the bot (sync loop, dispatcher, database commit, outbox, sender) in this process on
SQLite. Baseline: a bare matrix-nio echo bot on the same homeserver, in a process of its
own, that answers every `!tip` in its intake room with one notice in its review room —
nothing else. The officer and the analyst are nio clients in a third process
(`benchmarks.matrix_people`), so neither bot's loop does their work. Tips are sent one at a
time; latency is from the officer's send to the moment an analyst's client sees the card. Both bots run throughout and take turns in blocks of
tips (ours, the bare bot's, ours, …), with a pause between blocks for whatever a bot does
after answering, so a change in the machine's load falls on both alike. Ratio: ours ÷
baseline at the median; goal 1.5."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

from nio import RoomMessageText

from benchmarks.common import Comparison, Result, summary_ms
from benchmarks.matrix_common import (
    Watcher,
    account,
    login,
    person,
    register_bot,
    running_bot,
    synapse_server,
    until,
)
from benchmarks.matrix_people import Link, child

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


async def people(config: dict[str, Any], link: Link) -> None:
    """The officer and the analyst (``python -m benchmarks.matrix_people intake``): set up
    the rooms, start the bare echo bot in a process of its own, then, once the bot is
    ready, send every tip and time its card."""
    url, bot_user = config["url"], config["bot"]
    with tempfile.TemporaryDirectory() as stores:
        officer = await person(url, config["officer"], Path(stores))
        analyst = await person(url, config["analyst"], Path(stores))
        echo_user = config["echo"]["user_id"]
        # The analyst is in the review rooms only, as analysts working a queue are. A
        # member of an intake room too has its sync woken by the officer's `!tip` and by
        # the receipt, and a card landing meanwhile waits for that sync's round trip: a
        # measure of the watcher's timing, not of the bot.
        intake = await officer.create_room("tips", [bot_user])
        review = await officer.create_room("review", [bot_user, analyst.user_id])
        bare_intake = await officer.create_room("bare tips", [echo_user])
        bare_review = await officer.create_room("bare review", [echo_user, analyst.user_id])
        for room in (review, bare_review):
            await analyst.join(room)
        echo_config = {
            "url": url,
            "echo": config["echo"],
            "intake": bare_intake,
            "review": bare_review,
        }
        async with child("echo", echo_config) as echo:
            await echo.receive()  # it has joined and is answering
            watcher = Watcher(analyst.client, bot_user, also=(echo_user,))
            await watcher.start()
            await link.send({"analyst": analyst.user_id, "intake": intake, "review": review})
            await link.receive()  # the bot is ready
            ours: list[float] = []
            baseline: list[float] = []
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
            await link.send({"ours": ours, "baseline": baseline})
            await watcher.stop()
        for client in (officer.client, analyst.client):
            await client.close()


async def echo(config: dict[str, Any], link: Link) -> None:
    """The bare echo bot (``python -m benchmarks.matrix_people echo``): every `!tip` in
    its intake room answered with one notice in its review room, nothing else."""
    bare_intake, bare_review = config["intake"], config["review"]
    with tempfile.TemporaryDirectory() as stores:
        client = await login(config["url"], config["echo"], Path(stores))
        for room in (bare_intake, bare_review):
            await client.join(room)
        await client.sync(timeout=0, full_state=True)

        async def answer(room: object, event: RoomMessageText) -> None:
            if getattr(room, "room_id", "") == bare_intake and event.body.startswith("!tip"):
                await client.room_send(
                    bare_review,
                    "m.room.message",
                    {"msgtype": "m.notice", "body": "card: " + event.body[5:]},
                    ignore_unverified_devices=True,
                )

        client.add_event_callback(answer, RoomMessageText)  # type: ignore[arg-type]
        task = asyncio.create_task(client.sync_forever(timeout=30_000))
        await link.send({"ready": True})
        with contextlib.suppress(RuntimeError):
            await link.receive(within=24 * 3600)  # until the people are done
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()


async def scenario() -> Result:
    with synapse_server() as server, tempfile.TemporaryDirectory() as tmp:
        bot_user, password = await register_bot(server)
        config = {
            "url": server.url,
            "bot": bot_user,
            "officer": await account(server, "officer"),
            "analyst": await account(server, "analyst"),
            "echo": await account(server, "echo"),
        }
        async with child("intake", config) as people:
            rooms = await people.receive()
            policy = POLICY.format(**rooms)
            async with running_bot(server, bot_user, password, policy, Path(tmp)):
                await people.send({"go": True})
                timings = await people.receive()
        ours, baseline = timings["ours"], timings["baseline"]

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
