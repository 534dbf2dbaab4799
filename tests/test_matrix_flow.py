"""The Matrix adapter end to end against a real Synapse: officers, analysts and partners
are real nio clients; the bot is the real bot with its sync loop and sender."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from adapters.matrix.runtime import MatrixRuntime
from bot.app import FusionBot, build, start_matrix
from bot.policy_loader import parse_policy
from bot.settings import Settings
from storage.bot_state_repo import get_state, put_state
from storage.db import Database
from storage.tables import alert_feedback, audit_log, tips
from tests.matrix_server import SynapseServer
from tests.matrix_server.fixtures import synapse  # noqa: F401
from tests.matrix_server.people import Person, from_user, person

POLICY = """
[center]
name = "Test Fusion Center"
timezone = "America/New_York"
regions = ["north", "south"]

[roles]
officers = ["*"]
analysts = ["matrix:{analyst}"]
supervisors = ["matrix:{analyst}"]

[[intake]]
channels = ["matrix:{intake}", "matrix:{secure}"]

[[review]]
name = "general"
channels = ["matrix:{review}"]

[[partners]]
id = "metro-pd"
name = "Metro Police Department"
sector = "local"
max_tlp = "AMBER"
channels = ["matrix:{metro}"]

[[partners]]
id = "transit"
name = "Transit Authority"
sector = "local"
max_tlp = "CLEAR"
channels = ["matrix:{transit}"]
"""


@dataclass
class World:
    synapse: SynapseServer
    tmp_path: Path
    bot_user: str
    bot_password: str
    center: Person  # creates the rooms, as the center's Matrix admin would
    officer: Person
    analyst: Person
    partner: Person
    outsider: Person
    rooms: dict[str, str]
    database_url: str

    def settings(self) -> Settings:
        return Settings.from_environ(
            {
                "MATRIX_HOMESERVER": self.synapse.url,
                "MATRIX_USER_ID": self.bot_user,
                "MATRIX_PASSWORD": self.bot_password,
                "FUSIONBOT_DATA_DIR": str(self.tmp_path / "data"),
            }
        )

    def policy_text(self) -> str:
        return POLICY.format(analyst=self.analyst.user_id, **self.rooms)

    @contextlib.asynccontextmanager
    async def running_bot(self) -> AsyncIterator[tuple[FusionBot, MatrixRuntime]]:
        bot = build(
            self.settings(),
            policy=parse_policy(self.policy_text(), "matrix-test.toml"),
            database=Database(self.database_url),
        )
        await bot.start()
        runtime = await start_matrix(bot)
        try:
            await runtime.wait_ready(60)
            yield bot, runtime
        finally:
            await runtime.stop()
            await bot.stop()
            await runtime.close()


@pytest.fixture
async def world(synapse: SynapseServer, tmp_path: Path) -> AsyncIterator[World]:  # noqa: F811
    bot_password = secrets.token_urlsafe(12)
    bot_user = (
        await asyncio.to_thread(synapse.register, f"fusionbot-{secrets.token_hex(3)}", bot_password)
    ).user_id
    people = [await person(synapse, name) for name in ("center", "olly", "ana", "pat", "eve")]
    center, officer, analyst, partner, outsider = people
    everyone = [p.user_id for p in people[1:]] + [bot_user]
    rooms = {
        "intake": await center.create_room("tips", everyone),
        "secure": await center.create_room("tips (encrypted)", everyone, encrypted=True),
        "review": await center.create_room("review", [analyst.user_id, outsider.user_id, bot_user]),
        "metro": await center.create_room("metro-pd", [partner.user_id, bot_user]),
        "transit": await center.create_room("transit", [bot_user]),
    }
    for somebody, names in (
        (officer, ("intake", "secure")),
        (analyst, ("intake", "review")),
        (outsider, ("intake", "review")),
        (partner, ("metro",)),
    ):
        for name in names:
            await somebody.join(rooms[name])
    yield World(
        synapse,
        tmp_path,
        bot_user,
        bot_password,
        center,
        officer,
        analyst,
        partner,
        outsider,
        rooms,
        f"sqlite+aiosqlite:///{tmp_path / 'fusionbot.db'}",
    )
    for somebody in people:
        await somebody.close()


def notice(bot_user: str, room_id: str, contains: str = "") -> Any:
    match = from_user(bot_user, room_id=room_id, contains=contains)

    def check(room: str, event: dict[str, Any]) -> bool:
        content = event.get("content", {})
        return match(room, event) and "m.new_content" not in content

    return check


def edit_of(bot_user: str, event_id: str, contains: str = "") -> Any:
    def check(room: str, event: dict[str, Any]) -> bool:
        content = event.get("content", {})
        relation = content.get("m.relates_to")
        if not isinstance(relation, dict):
            return False
        return (
            event.get("sender") == bot_user
            and relation.get("rel_type") == "m.replace"
            and relation.get("event_id") == event_id
            and contains in content.get("m.new_content", {}).get("body", "")
        )

    return check


def replies_to(event_id: str) -> Any:
    def check(room: str, event: dict[str, Any]) -> bool:
        relation = event.get("content", {}).get("m.relates_to")
        if not isinstance(relation, dict):
            return False  # someone's malformed event
        return relation.get("m.in_reply_to", {}).get("event_id") == event_id

    return check


def both(*checks: Any) -> Any:
    return lambda room, event: all(c(room, event) for c in checks)


async def tip_rows(url: str) -> list[Any]:
    db = Database(url)
    try:
        async with db.read() as conn:
            return list((await conn.execute(select(tips).order_by(tips.c.id))).all())
    finally:
        await db.dispose()


async def test_tip_card_triage_by_reaction_and_alert_in_the_right_rooms(world: World) -> None:
    w, rooms, bot = world, world.rooms, world.bot_user
    async with w.running_bot():
        asked = await w.officer.say(
            rooms["intake"],
            "!tip Man photographing the substation fence @room\n"
            "category: photo\nlocation: 5th & Main",
        )
        receipt = await w.officer.wait_for(both(notice(bot, rooms["intake"]), replies_to(asked)))
        assert receipt.body.startswith("Received T-1")
        assert receipt.content["msgtype"] == "m.notice"

        card = await w.analyst.wait_for(notice(bot, rooms["review"], "T-1"))
        assert "Man photographing the substation fence" in card.body
        # The officer's "@room" can't ping the review room.
        assert "@room" not in card.body and card.content["m.mentions"] == {}
        assert "&amp;" in card.content["formatted_body"]  # "5th & Main", escaped

        await w.analyst.react(rooms["review"], card.event_id, "✋")
        await w.analyst.wait_for(edit_of(bot, card.event_id, "CLAIMED"))

        await w.analyst.react(rooms["review"], card.event_id, "✅")
        preview = await w.analyst.wait_for(
            both(notice(bot, rooms["review"], "Who will see this"), replies_to(card.event_id))
        )
        relation = preview.content["m.relates_to"]
        assert relation["rel_type"] == "m.thread" and relation["event_id"] == card.event_id
        assert "transit" in preview.body  # left out, with the reason

        await w.analyst.react(rooms["review"], preview.event_id, "✅")
        alert = await w.partner.wait_for(notice(bot, rooms["metro"], "A-1"))
        assert alert.body.splitlines()[0].startswith("TLP:")
        await w.analyst.wait_for(edit_of(bot, card.event_id, "APPROVED"))

        await w.partner.react(rooms["metro"], alert.event_id, "👍")
        await w.officer.wait_for(from_user(bot, contains="useful"))

        # A retraction edits the partner's copy in place.
        await w.analyst.say(rooms["review"], "!retract A-1 Wrong location given")
        await w.partner.wait_for(edit_of(bot, alert.event_id, "Wrong location given"))

    # Transit's clearance is below the alert's marking: nothing was posted there.
    await w.center.sync()
    assert w.center.messages_in(rooms["transit"], sender=bot) == []
    db = Database(w.database_url)
    try:
        async with db.read() as conn:
            verdicts = (await conn.execute(select(alert_feedback.c.useful))).scalars().all()
            actions = (await conn.execute(select(audit_log.c.action))).scalars().all()
    finally:
        await db.dispose()
    assert verdicts == [True]
    assert {"tip.filed", "tip.claimed", "tip.approved"} <= set(actions)


async def test_text_commands_answer_in_the_thread_and_default_to_its_tip(world: World) -> None:
    w, rooms, bot = world, world.rooms, world.bot_user
    async with w.running_bot():
        await w.officer.say(rooms["intake"], "!tip Drone over the rail yard | category: other")
        card = await w.analyst.wait_for(notice(bot, rooms["review"], "T-1"))
        asked = await w.analyst.say(rooms["review"], "!claim", thread=card.event_id)
        await w.analyst.wait_for(edit_of(bot, card.event_id, "CLAIMED"))
        question = await w.analyst.say(
            rooms["review"], "!ask What colour was it?", thread=card.event_id
        )
        await w.officer.wait_for(from_user(bot, contains="What colour was it?"))
        await w.analyst.say(rooms["review"], "!status T-1", thread=card.event_id)
        answer = await w.analyst.wait_for(notice(bot, rooms["review"], "T-1"))
        relation = answer.content["m.relates_to"]
        assert relation["rel_type"] == "m.thread" and relation["event_id"] == card.event_id
        assert asked != question


async def test_someone_not_allowed_to_triage_changes_nothing(world: World) -> None:
    w, rooms, bot = world, world.rooms, world.bot_user
    async with w.running_bot():
        await w.officer.say(rooms["intake"], "!tip Tampering with a gate lock | category: other")
        card = await w.outsider.wait_for(notice(bot, rooms["review"], "T-1"))
        command = await w.outsider.say(rooms["review"], "!claim T-1")
        refusal = await w.outsider.wait_for(both(notice(bot, rooms["review"]), replies_to(command)))
        assert "Only the center's analysts" in refusal.body
        await w.outsider.react(rooms["review"], card.event_id, "✋")
        refusal = await w.outsider.wait_for(
            both(
                notice(bot, rooms["review"], "Only the center's analysts"),
                replies_to(card.event_id),
            )
        )
    rows = await tip_rows(w.database_url)
    assert [(r.state, r.claimed_by) for r in rows] == [("new", None)]


async def test_hostile_message_body_is_escaped_and_pings_nobody(world: World) -> None:
    w, rooms, bot = world, world.rooms, world.bot_user
    hostile = (
        '!tip <img src=x onerror=alert(1)> <a href="https://evil.test">click</a> @room '
        "https://matrix.to/#/@ana:fusion.test \u202eevil\u202c '; DROP TABLE tips;-- "
    )
    async with w.running_bot():
        huge = await w.officer.say(rooms["intake"], "!tip " + "A" * 50_000)
        refusal = await w.officer.wait_for(replies_to(huge))
        assert "too long" in refusal.body
        await w.officer.say(rooms["intake"], hostile)
        card = await w.analyst.wait_for(notice(bot, rooms["review"], "T-1"))
    html = card.content["formatted_body"]
    assert "<img" not in html and "<a " not in html and "&lt;img" in html
    assert "@room" not in card.body.lower() and "matrix.to" not in card.body
    assert "\u202e" not in card.body
    assert card.content["m.mentions"] == {}
    rows = await tip_rows(w.database_url)
    assert len(rows) == 1 and "DROP TABLE tips" in rows[0].summary


async def test_restart_neither_replays_nor_loses_commands(world: World) -> None:
    w, rooms, bot = world, world.rooms, world.bot_user
    async with w.running_bot():
        await w.officer.say(rooms["intake"], "!tip First tip before the restart | category: other")
        await w.analyst.wait_for(notice(bot, rooms["review"], "T-1"))
    # While the bot is down, a tip is filed: it must be served after the restart.
    await w.officer.say(rooms["intake"], "!tip Second tip while the bot was down | category: other")
    async with w.running_bot():
        await w.analyst.wait_for(notice(bot, rooms["review"], "T-2"))
        await w.officer.say(rooms["intake"], "!tip Third tip after the restart | category: other")
        await w.analyst.wait_for(notice(bot, rooms["review"], "T-3"))
    rows = await tip_rows(w.database_url)
    assert [r.summary for r in rows] == [
        "First tip before the restart",
        "Second tip while the bot was down",
        "Third tip after the restart",
    ]
    await w.analyst.sync()
    cards = [
        s
        for s in w.analyst.messages_in(rooms["review"], sender=bot)
        if "m.new_content" not in s.content
    ]
    assert [c.body.split(" ", 1)[0] for c in cards] == ["T-1", "T-2", "T-3"]


async def test_commands_acted_on_just_before_a_crash_are_not_acted_on_again(
    world: World,
) -> None:
    """A crash can come after a command was answered but before the sync position past it
    was saved: the next start is shown that command again and must not answer it twice."""
    w, rooms, bot = world, world.rooms, world.bot_user
    token_key = f"matrix:{w.bot_user}:next_batch"
    async with w.running_bot():
        await w.officer.say(rooms["intake"], "!tip Drone over the rail yard | category: other")
        await w.analyst.wait_for(notice(bot, rooms["review"], "T-1"))
    db = Database(w.database_url)
    try:
        async with db.read() as conn:
            before_claim = await get_state(conn, token_key)
        async with w.running_bot():
            asked = await w.analyst.say(rooms["review"], "!claim T-1")
            await w.analyst.wait_for(both(notice(bot, rooms["review"]), replies_to(asked)))
        # What a crash right after the answer leaves: the position saved before the claim.
        async with db.transaction() as conn:
            await put_state(conn, token_key, before_claim)
    finally:
        await db.dispose()
    async with w.running_bot():
        await w.officer.say(rooms["intake"], "!tip Van at the depot gate | category: other")
        await w.analyst.wait_for(notice(bot, rooms["review"], "T-2"))
        await asyncio.sleep(1)  # a second answer to the claim would be out by now
        await w.analyst.sync()
    answers = [
        s
        for s in w.analyst.messages_in(rooms["review"], sender=bot)
        if replies_to(asked)(s.room_id, s.event) and "m.new_content" not in s.content
    ]
    assert len(answers) == 1, [a.body for a in answers]
    db = Database(w.database_url)
    try:
        async with db.read() as conn:
            claims = (
                await conn.execute(
                    select(audit_log.c.id).where(audit_log.c.action == "tip.claimed")
                )
            ).all()
    finally:
        await db.dispose()
    assert len(claims) == 1


async def test_encrypted_intake_room(world: World) -> None:
    w, rooms, bot = world, world.rooms, world.bot_user
    async with w.running_bot():
        asked = await w.officer.say(
            rooms["secure"], "!tip Package left at the courthouse | category: other"
        )
        receipt = await w.officer.wait_for(replies_to(asked))
        # The bot answered in the encrypted room, encrypted; the officer's client read it.
        raw = [s for s in w.officer.messages_in(rooms["secure"], sender=bot)]
        assert raw and receipt.body.startswith("Received T-1")
        card = await w.analyst.wait_for(notice(bot, rooms["review"], "T-1"))
        assert "Package left at the courthouse" in card.body


async def test_invites_outside_the_policy_are_declined(world: World) -> None:
    w, bot = world, world.bot_user
    async with w.running_bot() as (_, runtime):
        stray = await w.outsider.create_room("not in the policy", [bot])
        async with asyncio.timeout(30):
            while True:
                members = await w.outsider.client.joined_members(stray)
                await w.outsider.sync(timeout_ms=500)
                state = await w.outsider.client.room_get_state_event(stray, "m.room.member", bot)
                if getattr(state, "content", {}).get("membership") == "leave":
                    break
        assert bot not in [m.user_id for m in members.members]
        assert stray not in runtime.client.rooms


async def test_a_direct_chat_with_the_bot_files_tips(world: World) -> None:
    w, rooms, bot = world, world.rooms, world.bot_user
    async with w.running_bot():
        answer = await w.officer.client.room_create(is_direct=True, invite=[bot])
        dm = answer.room_id
        # The bot accepts a direct chat from an allowed server (its join is in the room).
        await w.officer.wait_for(
            lambda room, e: (
                room == dm
                and e.get("type") == "m.room.member"
                and e.get("state_key") == bot
                and e["content"].get("membership") == "join"
            )
        )
        asked = await w.officer.say(dm, "!tip Van circling the school at night | category: other")
        receipt = await w.officer.wait_for(replies_to(asked))
        assert receipt.room_id == dm and receipt.body.startswith("Received T-1")
        await w.analyst.wait_for(notice(bot, rooms["review"], "T-1"))
        # Plain words in the direct chat are for the bot: it answers with the command.
        said = await w.officer.say(dm, "Still there at midnight")
        answer = await w.officer.wait_for(replies_to(said))
        assert answer.body.startswith("I act only on commands, so that wasn't sent to anyone.")
        # Words in a room are people talking to each other: no answer (the next command's
        # answer is the first thing the bot says there).
        await w.officer.say(rooms["intake"], "anyone seen the sergeant?")
        asked = await w.officer.say(rooms["intake"], "!status")
        first = await w.officer.wait_for(
            lambda room, e: room == rooms["intake"] and e.get("sender") == bot
        )
        assert replies_to(asked)(rooms["intake"], first.event)


async def test_commands_from_servers_the_policy_does_not_allow_are_ignored(
    world: World,
) -> None:
    w, rooms = world, world.rooms
    policy = w.policy_text() + '\n[matrix]\nallowed_servers = ["partner.example"]\n'
    w.policy_text = lambda: policy  # type: ignore[method-assign]
    async with w.running_bot() as (bot, _):
        db = bot.db
        async with db.read() as conn:
            before = await get_state(conn, f"matrix:{w.bot_user}:next_batch")
        await w.officer.say(rooms["intake"], "!tip From a server nobody allowed | category: other")
        # The bot has seen the message once its saved sync position moves past it.
        async with asyncio.timeout(30):
            while True:
                async with db.read() as conn:
                    if await get_state(conn, f"matrix:{w.bot_user}:next_batch") != before:
                        break
                await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        await bot.drain(5)
    assert await tip_rows(w.database_url) == []
    await w.officer.sync()
    assert w.officer.messages_in(rooms["intake"], sender=w.bot_user) == []


async def test_direct_messages_reuse_one_room_across_restarts(world: World) -> None:
    w, rooms, bot = world, world.rooms, world.bot_user
    async with w.running_bot():
        await w.officer.say(rooms["intake"], "!tip Two men measuring the bridge | category: other")
        card = await w.analyst.wait_for(notice(bot, rooms["review"], "T-1"))
        await w.analyst.say(rooms["review"], "!claim T-1")
        await w.analyst.wait_for(edit_of(bot, card.event_id, "CLAIMED"))
        await w.analyst.say(rooms["review"], "!ask T-1 Which bridge?")
        first = await w.officer.wait_for(from_user(bot, contains="Which bridge?"))
    async with w.running_bot():
        await w.analyst.say(rooms["review"], "!ask T-1 And at what time?")
        second = await w.officer.wait_for(from_user(bot, contains="And at what time?"))
    assert first.room_id == second.room_id  # found again in the account's m.direct
    assert first.room_id not in rooms.values()
