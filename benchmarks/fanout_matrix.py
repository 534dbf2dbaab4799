"""fanout_matrix: one approved alert to 100 Matrix partner rooms on a real Synapse.

Ours: the bot in this process releases the alert (`!approve T-1 … to:all now confirm` typed
by a supervisor in the review room); we measure from that command until a member of all
100 rooms has seen the last copy, and count copies lost or doubled (must be 0).
Baselines: the platform's floor — the test homeserver exempts no one but has relaxed rate
limits, so its pace bounds nothing and the floor is what a client can do — measured as a
bare matrix-nio client posting the same 100 notices with the outbox worker's concurrency
(one task per room), timed the same way. Ratio: ours ÷ bare client; goal 1.1."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from benchmarks.common import Comparison, Result
from benchmarks.fanout import worker_concurrency
from benchmarks.matrix_common import (
    Watcher,
    person,
    register_bot,
    running_bot,
    synapse_server,
    until,
)
from tests.matrix_server.fixtures import make_client
from tests.test_matrix_faults import fanout_policy

NAME = "fanout_matrix"
GOAL = 1.1
ROOMS = 100


async def scenario() -> Result:
    problems: list[str] = []
    with synapse_server() as server, tempfile.TemporaryDirectory() as tmp:
        bot_user, password = await register_bot(server)
        officer, center = await person(server, "officer"), await person(server, "center")
        bare = await make_client(server, "bare")
        intake = await center.create_room("tips", [bot_user, officer.user_id])
        review = await center.create_room("review", [bot_user])
        rooms = [await center.create_room(f"p{n}", [bot_user]) for n in range(ROOMS)]
        bare_rooms = [await center.create_room(f"b{n}", [bare.user_id]) for n in range(ROOMS)]
        await officer.join(intake)
        for room in bare_rooms:
            await bare.join(room)

        watcher = Watcher(center.client, bot_user)
        await watcher.start()
        async with running_bot(
            server,
            bot_user,
            password,
            fanout_policy(center.user_id, intake, review, rooms),
            Path(tmp),
        ):
            await officer.say(intake, "!tip Drone over the stadium | category: other")
            await until(lambda: watcher.count([review]) >= 1, 30)
            await center.say(review, "!claim T-1")
            await asyncio.sleep(1.0)  # the claim's edit and answer are out
            started = time.monotonic()
            await center.say(review, "!approve T-1 tlp:green to:all now confirm")
            try:
                await until(lambda: watcher.count(rooms) == ROOMS, 120)
            except AssertionError:
                problems.append(f"only {watcher.count(rooms)} of {ROOMS} copies arrived")
            await asyncio.sleep(2.0)  # a late duplicate would show by now
        ours = max(watcher.arrivals[r][0][0] for r in rooms if r in watcher.arrivals) - started
        doubled = sum(1 for r in rooms if len(watcher.arrivals.get(r, [])) > 1)
        if doubled:
            problems.append(f"{doubled} rooms got the alert twice")
        await watcher.stop()

        # The bare client: the same number of notices, one task per room, at once.
        await bare.sync(timeout=0, full_state=True)
        bare_watcher = Watcher(center.client, bare.user_id)
        center.client.event_callbacks.clear()
        await bare_watcher.start()
        limit = asyncio.Semaphore(worker_concurrency())
        content = {"msgtype": "m.notice", "body": "TLP:GREEN\nA-1 Drone over the stadium"}

        async def post(room: str) -> None:
            async with limit:
                await bare.room_send(room, "m.room.message", content)

        started = time.monotonic()
        await asyncio.gather(*(post(room) for room in bare_rooms))
        await until(lambda: bare_watcher.count(bare_rooms) == ROOMS, 120)
        baseline = max(bare_watcher.arrivals[r][0][0] for r in bare_rooms) - started
        await bare_watcher.stop()
        for client in (officer.client, center.client, bare):
            await client.close()

    return Result(
        name=NAME,
        goal=GOAL,
        comparisons=[
            Comparison("approve → last copy", ours, baseline, "s", counts=True),
        ],
        figures={
            "rooms": ROOMS,
            "last_copy_s": round(ours, 3),
            "lost": ROOMS - sum(1 for r in rooms if watcher.arrivals.get(r)),
            "doubled": doubled,
        },
        baseline={
            "what": "bare matrix-nio client, same notices, worker concurrency",
            "last_copy_s": round(baseline, 3),
            "platform_floor": "none on the test homeserver (rate limits relaxed)",
        },
        notes=problems or [f"{ROOMS} rooms on Synapse 127.0.0.1 with relaxed rate limits"],
        ok=not problems,
    )


def run() -> Result:
    return asyncio.run(scenario())
