"""fanout_matrix: one approved alert to 100 Matrix partner rooms on a real Synapse.

Ours: the bot in this process releases the alert (`!approve T-n … to:all now confirm` typed
by a supervisor in the review room); we measure from that command until a member of all
100 rooms has seen the last copy, and count copies lost or doubled (must be 0).
Baselines: the platform's floor — the test homeserver exempts no one but has relaxed rate
limits, so its pace bounds nothing and the floor is what a client can do — measured as a
bare matrix-nio client, in a process of its own, posting the same 100 notices with the
outbox worker's concurrency (one task per room), timed the same way. The same notices:
each round it posts the content of the copy the member received from the bot that round
(a longer message costs the homeserver more: see benchmarks/README, "Eighth round").
The people (officer, supervisor, the member who sees the copies) are nio clients in a
third process (`benchmarks.matrix_people`), so neither sender's loop does their work.
Ours and the bare client take turns, 3 rounds each with a pause between turns, so a
change in the machine's load falls on both alike;
ratio: the median of ours ÷ the median of the bare client's; goal 1.5, as issue 7 sets it
for a bare baseline (its 1.1 is for the platform's floor, which doesn't bound anything on the
test homeserver: see ``baseline["platform_floor"]``)."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Comparison, Result
from benchmarks.fanout import worker_concurrency
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
from tests.test_matrix_faults import fanout_policy

NAME = "fanout_matrix"
GOAL = 1.5
ROOMS = 100
ROUNDS = 3
# Between turns: a late duplicate would show by now, and neither turn pays for the
# other's leftovers (ours saves its sync position a second after a batch).
PAUSE = 2.0


async def people(config: dict[str, Any], link: Link) -> None:
    """The officer, the supervisor and the member of every room
    (``python -m benchmarks.matrix_people fanout``): set up the rooms, start the bare client
    in a process of its own, then, once the bot is ready, take the turns and time them."""
    url, bot_user, bare_user = config["url"], config["bot"], config["bare"]["user_id"]
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as stores:
        officer = await person(url, config["officer"], Path(stores))
        center = await person(url, config["center"], Path(stores))
        intake = await center.create_room("tips", [bot_user, officer.user_id])
        review = await center.create_room("review", [bot_user])
        rooms = [await center.create_room(f"p{n}", [bot_user]) for n in range(ROOMS)]
        bare_rooms = [await center.create_room(f"b{n}", [bare_user]) for n in range(ROOMS)]
        await officer.join(intake)
        bare_config = {
            "url": url,
            "bare": config["bare"],
            "rooms": bare_rooms,
            "concurrency": config["concurrency"],
        }
        async with child("bare", bare_config) as bare:
            await bare.receive()  # it has joined every room

            watcher = Watcher(center.client, bot_user, also=(bare_user,))
            await watcher.start()

            def last_copy(targets: list[str], round_: int, started: float) -> float:
                return max(watcher.arrivals[r][round_][0] for r in targets) - started

            def copies(targets: list[str], round_: int) -> int:
                return sum(1 for r in targets if len(watcher.arrivals.get(r, [])) > round_)

            async def ours_round(round_: int) -> float | None:
                n = round_ + 1
                cards = len(watcher.arrivals.get(review, []))
                await officer.say(intake, f"!tip Drone over the stadium {n} | category: other")
                await until(lambda: len(watcher.arrivals.get(review, [])) > cards, 30)
                await center.say(review, f"!claim T-{n}")
                await asyncio.sleep(1.0)  # the claim's edit and answer are out
                started = time.monotonic()
                await center.say(review, f"!approve T-{n} tlp:green to:all now confirm")
                try:
                    await until(lambda: copies(rooms, round_) == ROOMS, 120)
                except AssertionError:
                    problems.append(f"round {n}: only {copies(rooms, round_)} of {ROOMS} arrived")
                    return None
                return last_copy(rooms, round_, started)

            async def bare_round(round_: int) -> float:
                # The same message: the copy of ours that the member received this round.
                await bare.send({"content": watcher.contents[rooms[0]][round_]})
                started = (await bare.receive())["started"]
                await until(lambda: copies(bare_rooms, round_) == ROOMS, 120)
                return last_copy(bare_rooms, round_, started)

            await link.send(
                {"center": center.user_id, "intake": intake, "review": review, "rooms": rooms}
            )
            await link.receive()  # the bot is ready
            ours: list[float] = []
            baseline: list[float] = []
            attempted = 0
            for round_ in range(ROUNDS):
                attempted += 1
                took = await ours_round(round_)
                if took is None:
                    break
                ours.append(took)
                await asyncio.sleep(PAUSE)
                baseline.append(await bare_round(round_))
                await asyncio.sleep(PAUSE)
            await link.send({"done": True})
            await link.receive()  # the bot has stopped
            doubled = sum(1 for r in rooms if len(watcher.arrivals.get(r, [])) > attempted)
            if doubled:
                problems.append(f"{doubled} rooms got an alert twice")
            lost = sum(max(0, attempted - len(watcher.arrivals.get(r, []))) for r in rooms)
            await watcher.stop()
        await link.send(
            {
                "ours": ours,
                "baseline": baseline,
                "doubled": doubled,
                "lost": lost,
                "problems": problems,
            }
        )
        for client in (officer.client, center.client):
            await client.close()


async def bare(config: dict[str, Any], link: Link) -> None:
    """The bare client (``python -m benchmarks.matrix_people bare``): on each round, the
    notice it is given 100 times, one task per room, at most the outbox worker's
    concurrency at once; answers with the moment it started."""
    with tempfile.TemporaryDirectory() as stores:
        client = await login(config["url"], config["bare"], Path(stores))
        for room in config["rooms"]:
            await client.join(room)
        await client.sync(timeout=0, full_state=True)
        limit = asyncio.Semaphore(config["concurrency"])
        await link.send({"ready": True})
        while True:
            try:
                order = await link.receive(within=24 * 3600)
            except RuntimeError:
                break  # the people are done
            content = order["content"]

            async def post(room: str, content: dict[str, Any] = content) -> None:
                async with limit:
                    await client.room_send(room, "m.room.message", content)

            started = time.monotonic()
            await asyncio.gather(*(post(room) for room in config["rooms"]))
            await link.send({"started": started})
        with contextlib.suppress(Exception):
            await client.close()


async def scenario() -> Result:
    with synapse_server() as server, tempfile.TemporaryDirectory() as tmp:
        bot_user, password = await register_bot(server)
        config = {
            "url": server.url,
            "bot": bot_user,
            "officer": await account(server, "officer"),
            "center": await account(server, "center"),
            "bare": await account(server, "bare"),
            "concurrency": worker_concurrency(),
        }
        async with child("fanout", config) as people:
            setup = await people.receive()
            policy = fanout_policy(
                setup["center"], setup["intake"], setup["review"], setup["rooms"]
            )
            async with running_bot(server, bot_user, password, policy, Path(tmp)):
                await people.send({"go": True})
                await people.receive()  # done
            await people.send({"stopped": True})
            found = await people.receive()
        ours, baseline = found["ours"], found["baseline"]
        lost, doubled, problems = found["lost"], found["doubled"], found["problems"]

    ours_s = statistics.median(ours) if ours else None
    base_s = statistics.median(baseline) if baseline else None
    return Result(
        name=NAME,
        goal=GOAL,
        comparisons=[
            Comparison("approve → last copy (median)", ours_s, base_s, "s", counts=True),
        ],
        figures={
            "rooms": ROOMS,
            "rounds": ROUNDS,
            "last_copy_s": [round(x, 3) for x in ours],
            "lost": lost,
            "doubled": doubled,
        },
        baseline={
            "what": "bare matrix-nio client, same notices, worker concurrency",
            "last_copy_s": [round(x, 3) for x in baseline],
            "platform_floor": "none on the test homeserver (rate limits relaxed)",
        },
        notes=problems
        or [
            f"{ROOMS} rooms on Synapse 127.0.0.1 with relaxed rate limits; {ROUNDS} rounds "
            "each, in turns; ours "
            + ", ".join(f"{x:.2f}" for x in ours)
            + " s, bare "
            + ", ".join(f"{x:.2f}" for x in baseline)
            + " s"
        ],
        ok=not problems,
    )


def run() -> Result:
    return asyncio.run(scenario())
