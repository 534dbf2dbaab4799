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
baseline at the median; goal 1.5.

Shown too, not counted: the same echo bot doing the least the design asks of a bot (in
rooms of its own, in the same turns): it commits the tip as one row (SQLite, through the
bot's own database layer) before answering, and answers with the card in its review room
and a receipt under the officer's message, sent together — what separates ours from it is
the bot's own work, not the design's."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

from nio import RoomMessageText
from sqlalchemy import Column, Integer, MetaData, Table, Text

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
from storage.db import Database

# The least the design asks of a bot before it answers: the tip committed (one row).
_metadata = MetaData()
_tips = Table("tips", _metadata, Column("id", Integer, primary_key=True), Column("text", Text))

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
        least_intake = await officer.create_room("least tips", [echo_user])
        least_review = await officer.create_room("least review", [echo_user, analyst.user_id])
        for room in (review, bare_review, least_review):
            await analyst.join(room)
        echo_config = {
            "url": url,
            "echo": config["echo"],
            "intake": bare_intake,
            "review": bare_review,
            "least_intake": least_intake,
            "least_review": least_review,
        }
        async with child("echo", echo_config) as echo:
            await echo.receive()  # it has joined and is answering
            watcher = Watcher(analyst.client, bot_user, also=(echo_user,))
            await watcher.start()
            await link.send({"analyst": analyst.user_id, "intake": intake, "review": review})
            await link.receive()  # the bot is ready
            ours: list[float] = []
            baseline: list[float] = []
            least: list[float] = []
            turns = (
                ((intake, review), ours),
                ((bare_intake, bare_review), baseline),
                ((least_intake, least_review), least),
            )
            for rooms, _ in turns:
                await measure(officer, watcher, *rooms, 0, WARMUP)
            done = 0
            while done < TIPS:
                count = min(BLOCK, TIPS - done)
                for rooms, into in turns:
                    await asyncio.sleep(PAUSE)
                    into += await measure(officer, watcher, *rooms, WARMUP + done, count)
                done += count
            await link.send({"ours": ours, "baseline": baseline, "least": least})
            await watcher.stop()
        for client in (officer.client, analyst.client):
            await client.close()


async def echo(config: dict[str, Any], link: Link) -> None:
    """The bare echo bot (``python -m benchmarks.matrix_people echo``): every `!tip` in
    its intake room answered with one notice in its review room, nothing else. In its
    second pair of rooms it does the least the design asks: the tip committed as one row
    first, then the card and a receipt under the officer's message, sent together."""
    bare_intake, bare_review = config["intake"], config["review"]
    least_intake, least_review = config["least_intake"], config["least_review"]
    with tempfile.TemporaryDirectory() as stores:
        client = await login(config["url"], config["echo"], Path(stores))
        for room in (bare_intake, bare_review, least_intake, least_review):
            await client.join(room)
        await client.sync(timeout=0, full_state=True)
        database = Database(f"sqlite+aiosqlite:///{Path(stores) / 'least.db'}")
        async with database.transaction() as conn:
            await conn.run_sync(_metadata.create_all)

        async def notice(room_id: str, body: str, reply_to: str | None = None) -> None:
            content: dict[str, Any] = {"msgtype": "m.notice", "body": body}
            if reply_to is not None:
                content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
            await client.room_send(
                room_id, "m.room.message", content, ignore_unverified_devices=True
            )

        async def answer(room: object, event: RoomMessageText) -> None:
            room_id = getattr(room, "room_id", "")
            if not event.body.startswith("!tip"):
                return
            if room_id == bare_intake:
                await notice(bare_review, "card: " + event.body[5:])
            elif room_id == least_intake:
                async with database.transaction() as conn:
                    await conn.execute(_tips.insert().values(text=event.body))
                await asyncio.gather(
                    notice(least_review, "card: " + event.body[5:]),
                    notice(least_intake, "Received.", reply_to=event.event_id),
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
        await database.dispose()


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
        ours, baseline, least = timings["ours"], timings["baseline"], timings["least"]

    ours_ms, base_ms, least_ms = summary_ms(ours), summary_ms(baseline), summary_ms(least)
    return Result(
        name=NAME,
        goal=GOAL,
        comparisons=[
            Comparison("tip → card p50", ours_ms["p50_ms"], base_ms["p50_ms"], "ms", counts=True),
            Comparison("tip → card p95", ours_ms["p95_ms"], base_ms["p95_ms"], "ms"),
            Comparison("tip → card max", ours_ms["max_ms"], base_ms["max_ms"], "ms"),
            Comparison(
                "vs the design's least: tip → card p50",
                ours_ms["p50_ms"],
                least_ms["p50_ms"],
                "ms",
            ),
            Comparison(
                "vs the design's least: tip → card p95",
                ours_ms["p95_ms"],
                least_ms["p95_ms"],
                "ms",
            ),
        ],
        figures={"tips": TIPS, "latency_ms": ours_ms},
        baseline={
            "what": "bare matrix-nio echo bot, same homeserver",
            "latency_ms": base_ms,
            "design_least": {
                "what": "the echo bot committing one row, then sending card and receipt",
                "latency_ms": least_ms,
            },
        },
        notes=[
            f"{TIPS} tips one at a time after {WARMUP} warm-up tips, in turns of {BLOCK} "
            "with the bare bot; Synapse 127.0.0.1",
            "'vs the design's least': against the echo bot committing the tip as one row "
            "before answering with the card and a receipt (informative, not in the ratio)",
        ],
    )


def run() -> Result:
    return asyncio.run(scenario())
