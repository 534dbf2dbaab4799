"""The Matrix sender against a real Synapse: render, post, edit, resend, redact, DMs, errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nio import (
    AsyncClient,
    ErrorResponse,
    InviteMemberEvent,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomSendError,
    SyncResponse,
)

from adapters.matrix.render import WORD_JOINER, render_matrix
from adapters.matrix.sender import MatrixSender, delivery_error, parse_ref
from bot.delivery import HoldDelivery, Outgoing, PermanentFailure, RateLimited, TemporaryFailure
from bot.messages import Button, Message, MessageField
from bot.tlp import TLP
from tests.matrix_server import SynapseServer
from tests.matrix_server.fixtures import make_client, synapse  # noqa: F401

HOSTILE = '<b>x</b> @room <a href="https://evil.test">y</a> https://matrix.to/#/@ana:fusion.test'


def card(text: str = HOSTILE, header: str = "TIP T-1") -> Message:
    return Message(
        header=header,
        text=text,
        fields=[MessageField(label="Category <i>", value="CYBER & @ROOM")],
        tlp=TLP.AMBER,
        caveats=["LES"],
        buttons=[Button(label="Claim", command="claim T-1")],
        footer="filed by <script>",
    )


# ---------------------------------------------------------------- render (no server)


def test_render_escapes_user_text_and_defuses_mentions() -> None:
    content = render_matrix(card())
    body, html = content["body"], content["formatted_body"]
    assert content["msgtype"] == "m.notice"
    assert content["format"] == "org.matrix.custom.html"
    assert content["m.mentions"] == {}
    assert body.splitlines()[0] == "TLP:AMBER // LES"
    assert "Category <i>: CYBER & @\u2060ROOM" in body
    assert "[Claim: !claim T-1]" in body
    for text in (body, html):
        assert "@room" not in text.lower()
        assert "matrix.to" not in text
    assert html.startswith("<strong>TLP:AMBER // LES</strong><br><strong>TIP T-1</strong>")
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert "<a" not in html and "<script" not in html and "<i>" not in html
    assert "<b>Category &lt;i&gt;</b>: CYBER &amp; @" + WORD_JOINER + "ROOM" in html
    assert "<em>filed by &lt;script&gt;</em>" in html
    assert "<code>!claim T-1</code>" in html


def test_multiline_text_becomes_line_breaks() -> None:
    html = render_matrix(Message(text="one\ntwo <3"))["formatted_body"]
    assert html == "one<br>two &lt;3"


def test_error_mapping_from_nio_responses() -> None:
    limited = delivery_error("room_send", RoomSendError("Too Many", "M_LIMIT_EXCEEDED", 1500))
    assert isinstance(limited, RateLimited) and limited.retry_after == 1.5
    no_hint = delivery_error("room_send", RoomSendError("Too Many", "M_LIMIT_EXCEEDED"))
    assert isinstance(no_hint, RateLimited) and no_hint.retry_after == 1.0
    assert isinstance(
        delivery_error("room_send", RoomSendError("gone", "M_UNKNOWN_TOKEN")), HoldDelivery
    )
    assert isinstance(
        delivery_error("room_send", RoomSendError("not in room", "M_FORBIDDEN")), PermanentFailure
    )
    # A proxy's HTML page: nio finds no Matrix error in it.
    assert isinstance(delivery_error("room_send", ErrorResponse("unknown error")), TemporaryFailure)


def test_refs_are_opaque_room_ids() -> None:
    assert parse_ref("!abc:def:ghi|$ev") == ("!abc:def:ghi", "$ev")
    with pytest.raises(PermanentFailure):
        parse_ref("C123:1.2")


# ---------------------------------------------------------------- against Synapse


async def shared_room(bot: AsyncClient, reader: AsyncClient) -> str:
    created = await bot.room_create(name="review", invite=[reader.user_id])
    assert isinstance(created, RoomCreateResponse), created
    joined = await reader.join(created.room_id)
    assert not isinstance(joined, ErrorResponse), joined
    return created.room_id


@contextlib.asynccontextmanager
async def syncing(client: AsyncClient) -> AsyncIterator[None]:
    """The bot's sync loop, as the listener runs it in production: an encrypting client
    sends only to rooms its sync has shown it."""
    first = await client.sync(timeout=0, full_state=True)
    assert isinstance(first, SyncResponse), first
    task = asyncio.create_task(client.sync_forever(timeout=500))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def timeline(reader: AsyncClient, room_id: str) -> list[dict[str, Any]]:
    """The room's recent events as raw JSON, oldest first."""
    synced = await reader.sync(timeout=0)
    assert isinstance(synced, SyncResponse), synced
    answer = await reader.room_messages(room_id, start=reader.next_batch, limit=50)
    assert isinstance(answer, RoomMessagesResponse), answer
    return [event.source for event in reversed(answer.chunk)]


def messages_from(events: list[dict[str, Any]], sender: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "m.room.message" and e["sender"] == sender]


async def test_post_resend_edit_and_redact(synapse: SynapseServer) -> None:  # noqa: F811
    bot = await make_client(synapse, "bot")
    reader = await make_client(synapse, "reader")
    try:
        room_id = await shared_room(bot, reader)
        await bot.sync(timeout=0, full_state=True)
        sender = MatrixSender(bot)
        assert bot.config.max_limit_exceeded == 0
        target = f"matrix:{room_id}"

        out = Outgoing(target=target, message=card(), key="outbox-1")
        ref = await sender.post(out)
        assert ref.startswith(room_id + "|$")
        # A resend after a crash: same key, same device -> Synapse answers with the same event.
        assert await sender.post(out) == ref
        assert await sender.find_sent(out) is None

        posted = messages_from(await timeline(reader, room_id), bot.user_id)
        assert len(posted) == 1
        content = posted[0]["content"]
        assert content["msgtype"] == "m.notice"
        assert "&lt;b&gt;x&lt;/b&gt;" in content["formatted_body"]
        assert "<b>x</b>" not in content["formatted_body"]
        assert "@room" not in content["body"].lower()
        assert "@room" not in content["formatted_body"].lower()

        changed = Outgoing(target=target, message=card(header="TIP T-1 (claimed)"), key="outbox-2")
        await sender.edit(changed, ref)
        await sender.edit(changed, ref)  # resent edit: still one
        event_id = parse_ref(ref)[1]
        edits = [
            e
            for e in messages_from(await timeline(reader, room_id), bot.user_id)
            if e["content"].get("m.relates_to", {}).get("rel_type") == "m.replace"
        ]
        assert len(edits) == 1
        assert edits[0]["content"]["m.relates_to"]["event_id"] == event_id
        assert edits[0]["content"]["m.new_content"]["body"].splitlines()[1] == "TIP T-1 (claimed)"
        assert edits[0]["content"]["body"].startswith("* ")

        await sender.delete(Outgoing(target=target, message=card(), key="outbox-3"), ref)
        events = await timeline(reader, room_id)
        original = next(e for e in events if e.get("event_id") == event_id)
        assert original["content"] == {}  # redacted
        assert any(e["type"] == "m.room.redaction" for e in events)
    finally:
        await bot.close()
        await reader.close()


async def test_a_person_gets_a_direct_room(synapse: SynapseServer) -> None:  # noqa: F811
    bot = await make_client(synapse, "bot")
    person = await make_client(synapse, "officer")
    try:
        await person.sync(timeout=0)
        sender = MatrixSender(bot)
        target = f"matrix:{person.user_id}"
        async with syncing(bot):
            first = await sender.post(Outgoing(target=target, message=card(), key="dm-1"))
            second = await sender.post(Outgoing(target=target, message=card(), key="dm-2"))
        room_id = parse_ref(first)[0]
        assert parse_ref(second)[0] == room_id  # reused

        invite_state: list[Any] = []
        async with asyncio.timeout(10):
            while not invite_state:
                sync = await person.sync(timeout=500)
                assert isinstance(sync, SyncResponse), sync
                if room_id in sync.rooms.invite:
                    invite_state = sync.rooms.invite[room_id].invite_state
        member = [
            e
            for e in invite_state
            if isinstance(e, InviteMemberEvent) and e.state_key == person.user_id
        ]
        assert member and member[0].content.get("is_direct") is True
        assert member[0].sender == bot.user_id

        # A private note about a channel goes to the person's direct room too.
        ephemeral = Outgoing(
            target="matrix:!elsewhere", message=card(), key="eph-1", ephemeral_to=target
        )
        async with syncing(bot):
            assert parse_ref(await sender.post(ephemeral))[0] == room_id
    finally:
        await bot.close()
        await person.close()


async def test_a_room_the_bot_is_not_in_is_permanent(synapse: SynapseServer) -> None:  # noqa: F811
    bot = await make_client(synapse, "bot")
    other = await make_client(synapse, "other")
    try:
        created = await other.room_create(name="private")
        assert isinstance(created, RoomCreateResponse)
        sender = MatrixSender(bot)
        await bot.sync(timeout=0, full_state=True)
        with pytest.raises(PermanentFailure, match="not in"):
            await sender.post(
                Outgoing(target=f"matrix:{created.room_id}", message=card(), key="x-1")
            )
    finally:
        await bot.close()
        await other.close()


async def test_m_limit_exceeded_becomes_rate_limited(synapse: SynapseServer) -> None:  # noqa: F811
    admin = await asyncio.to_thread(synapse.register, "limit-admin", "pw-limit-admin", True)
    bot = await make_client(synapse, "bot")
    try:
        await asyncio.to_thread(
            synapse.override_ratelimit,
            bot.user_id,
            admin.access_token,
            messages_per_second=1,
            burst_count=1,
        )
        created = await bot.room_create(name="slow")
        assert isinstance(created, RoomCreateResponse)
        await bot.sync(timeout=0, full_state=True)
        sender = MatrixSender(bot)
        target = f"matrix:{created.room_id}"
        with pytest.raises(RateLimited) as limited:
            for n in range(5):
                await sender.post(Outgoing(target=target, message=card(), key=f"rl-{n}"))
        assert 0 < limited.value.retry_after <= 5
    finally:
        await bot.close()
