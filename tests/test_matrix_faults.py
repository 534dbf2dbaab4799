"""Matrix under faults: the homeserver stopped and restarted, malformed events, and the bot
process SIGKILLed in the middle of a fan-out to many rooms (each room must end up with the
alert exactly once: the outbox key is the transaction id, and the device is kept)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path
from typing import Any

import pytest
from nio import Api, RoomSendResponse

from commands.context import Command
from tests.fakes.slack_web_api import FakeSlackWebAPI
from tests.matrix_server import SynapseServer
from tests.matrix_server.fixtures import synapse  # noqa: F401
from tests.matrix_server.people import from_user, person
from tests.test_matrix_flow import World, edit_of, notice, replies_to, tip_rows, world  # noqa: F401
from tests.test_slack_flow import fusionbot_run


async def test_homeserver_stopped_and_restarted(world: World) -> None:  # noqa: F811
    w, rooms, bot_user = world, world.rooms, world.bot_user
    async with w.running_bot() as (bot, _):
        await w.officer.say(rooms["intake"], "!tip Cut fence at the reservoir | category: other")
        card = await w.analyst.wait_for(notice(bot_user, rooms["review"], "T-1"))

        await asyncio.to_thread(w.synapse.stop)
        # Meanwhile the tip is claimed (as from another platform): the card's edit waits.
        await bot.handle(
            Command(actor=w.analyst.address, channel=f"matrix:{rooms['review']}", text="!claim T-1")
        )
        await asyncio.sleep(3)  # the sender fails and retries; the sync loop backs off
        await asyncio.to_thread(w.synapse.start)

        await w.analyst.wait_for(edit_of(bot_user, card.event_id, "CLAIMED"), within=90)
        asked = await w.officer.say(
            rooms["intake"], "!tip Second tip after the outage | category: other"
        )
        await w.officer.wait_for(replies_to(asked), within=90)
        await w.analyst.wait_for(notice(bot_user, rooms["review"], "T-2"), within=30)
        await bot.drain(10)
    await w.analyst.sync()
    edits = [
        s
        for s in w.analyst.messages_in(rooms["review"], sender=bot_user)
        if s.content.get("m.relates_to", {}).get("event_id") == card.event_id
        and s.content.get("m.relates_to", {}).get("rel_type") == "m.replace"
    ]
    assert len(edits) == 1  # retried, delivered once
    assert [r.summary for r in await tip_rows(w.database_url)] == [
        "Cut fence at the reservoir",
        "Second tip after the outage",
    ]


MALFORMED: list[tuple[str, dict[str, Any]]] = [
    ("m.room.message", {"msgtype": "m.text", "body": 12345}),
    ("m.room.message", {"msgtype": "m.text"}),
    ("m.room.message", {"msgtype": "m.text", "body": ["!tip", "a list"]}),
    ("m.room.message", {"msgtype": "m.text", "body": "!tip x", "m.relates_to": "not an object"}),
    (
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": "!claim",
            "m.relates_to": {"rel_type": "m.thread", "event_id": "$does-not-exist"},
        },
    ),
    ("m.room.message", {"msgtype": "m.text", "body": "!"}),
    ("m.room.message", {"msgtype": "m.text", "body": "!claim T-99999999999999999999"}),
    ("m.room.message", {"msgtype": "m.text", "body": "!tip " + "\u202e" * 100}),
    ("m.room.message", {"msgtype": "m.emote", "body": "!tip an emote is not a command"}),
    ("m.room.message", {"msgtype": "m.text", "body": "!tip edited", "m.new_content": {}}),
    ("m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$nope"}}),
    ("m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$nope", "key": 7}}),
    ("m.reaction", {"m.relates_to": "✋"}),
    ("org.example.custom", {"body": "!tip custom event"}),
]


async def test_malformed_events_are_ignored_or_answered_and_nothing_breaks(
    world: World,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    w, rooms = world, world.rooms
    async with w.running_bot() as (bot, _):
        with caplog.at_level(logging.WARNING):
            for event_type, content in MALFORMED:
                await w.outsider.sync()
                # Sent raw, as a broken or hostile client would (nio checks nothing here).
                await w.outsider.client._send(
                    RoomSendResponse,
                    *Api.room_send(
                        w.outsider.client.access_token,
                        rooms["intake"],
                        event_type,
                        content,
                        secrets.token_hex(8),
                    ),
                    (rooms["intake"],),
                )
            asked = await w.officer.say(rooms["intake"], "!tip After the garbage | category: other")
            await w.officer.wait_for(replies_to(asked))
            await bot.drain(10)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "nio" not in r.name]
    assert errors == [], [r.getMessage() for r in errors]
    rows = await tip_rows(w.database_url)
    # A broken relation or a stray m.new_content doesn't spoil an otherwise valid !tip;
    # everything else was ignored or refused.
    assert [r.summary for r in rows] == ["x", "edited", "After the garbage"]


PARTNERS = 40


def fanout_policy(analyst: str, intake: str, review: str, partner_rooms: list[str]) -> str:
    partners = "".join(
        f"""
[[partners]]
id = "p{n:02d}"
name = "Partner {n}"
sector = "local"
max_tlp = "AMBER"
channels = ["matrix:{room}"]
"""
        for n, room in enumerate(partner_rooms)
    )
    return f"""
[center]
name = "Test Fusion Center"
timezone = "America/New_York"
regions = ["north"]

[roles]
officers = ["*"]
analysts = ["matrix:{analyst}"]
supervisors = ["matrix:{analyst}"]

[[intake]]
channels = ["matrix:{intake}"]

[[review]]
name = "general"
channels = ["matrix:{review}"]
{partners}"""


async def test_bot_killed_during_a_matrix_fanout_sends_each_room_one_copy(
    synapse: SynapseServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    password = secrets.token_urlsafe(12)
    bot_user = (
        await asyncio.to_thread(synapse.register, f"fusionbot-{secrets.token_hex(3)}", password)
    ).user_id
    officer, center = await person(synapse, "olly"), await person(synapse, "center")
    try:
        intake = await center.create_room("tips", [officer.user_id, bot_user])
        review = await center.create_room("review", [bot_user])
        partner_rooms = [
            await center.create_room(f"partner {n}", [bot_user]) for n in range(PARTNERS)
        ]
        await officer.join(intake)
        policy = fanout_policy(center.user_id, intake, review, partner_rooms)
        env = {
            "MATRIX_HOMESERVER": synapse.url,
            "MATRIX_USER_ID": bot_user,
            "MATRIX_PASSWORD": password,
        }

        def copies() -> dict[str, int]:
            found = {room: 0 for room in partner_rooms}
            for seen in center.seen:
                if (
                    seen.room_id in found
                    and seen.event.get("sender") == bot_user
                    and seen.event.get("type") == "m.room.message"
                    and "m.new_content" not in seen.content
                ):
                    found[seen.room_id] += 1
            return found

        kills = 0
        async with FakeSlackWebAPI() as fake:
            async with fusionbot_run(
                tmp_path, fake, policy, env=env, log_name="run-1.log", may_be_killed=True
            ) as (_, process, _):
                await officer.say(
                    intake, "!tip Explosives smell near the stadium | category: other"
                )
                card = await center.wait_for(
                    from_user(bot_user, room_id=review, contains="T-1"), within=60
                )
                await center.say(review, "!claim T-1")
                await center.wait_for(edit_of(bot_user, card.event_id, "CLAIMED"), within=60)
                await center.say(review, "!approve T-1 tlp:green to:all now confirm")
                # Kill as soon as the first copies are out, in the middle of the fan-out.
                await center.wait_for(
                    lambda room, e: room in partner_rooms and e.get("sender") == bot_user,
                    within=60,
                )
                process.kill()
                await process.wait()
                kills += 1
            sent_before_kill = sum(1 for n in copies().values() if n)
            async with fusionbot_run(
                tmp_path, fake, policy, env=env, log_name="run-2.log", may_be_killed=True
            ):
                async with asyncio.timeout(90):
                    while not all(copies().values()):
                        await center.sync(timeout_ms=500)
                await asyncio.sleep(2)
                await center.sync()
        counts = copies()
        assert sorted(set(counts.values())) == [1], counts  # none lost, none doubled
        assert kills == 1 and 0 < sent_before_kill <= PARTNERS
    finally:
        await officer.close()
        await center.close()
