"""People on the test homeserver: real nio clients that say things, react, and wait for
what the bot sends, end-to-end encryption included."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nio import (
    AsyncClient,
    ErrorResponse,
    JoinResponse,
    RoomCreateResponse,
    RoomSendResponse,
    SyncResponse,
)
from nio.api import RoomPreset

from tests.matrix_server.fixtures import make_client
from tests.matrix_server.synapse import SynapseServer

Predicate = Callable[[str, dict[str, Any]], bool]


@dataclass
class Seen:
    room_id: str
    event: dict[str, Any]

    @property
    def content(self) -> dict[str, Any]:
        return self.event.get("content", {})

    @property
    def event_id(self) -> str:
        return str(self.event["event_id"])

    @property
    def body(self) -> str:
        return str(self.content.get("body", ""))


@dataclass
class Person:
    client: AsyncClient
    seen: list[Seen] = field(default_factory=list)
    _cursor: int = 0

    @property
    def user_id(self) -> str:
        return self.client.user_id

    @property
    def address(self) -> str:
        return f"matrix:{self.user_id}"

    async def sync(self, timeout_ms: int = 0) -> None:
        """One sync, with the key upkeep a real client does, recording room events as
        the client would show them (decrypted where it has the keys)."""
        client = self.client
        answer = await client.sync(timeout=timeout_ms, full_state=not client.next_batch)
        assert isinstance(answer, SyncResponse), answer
        for room_id, info in answer.rooms.join.items():
            for event in info.timeline.events:
                self.seen.append(Seen(room_id, dict(event.source)))
        for room_id in answer.rooms.invite:
            # People accept the bot's direct chats (and any other invite) at once.
            await client.join(room_id)
        await client.send_to_device_messages()
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())

    async def wait_for(self, predicate: Predicate, within: float = 30.0) -> Seen:
        """The first event (from now on, or already seen but not yet waited past) that
        matches; events before it are not looked at again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            for index in range(self._cursor, len(self.seen)):
                item = self.seen[index]
                if predicate(item.room_id, item.event):
                    self._cursor = index + 1
                    return item
            if loop.time() > deadline:
                recent = [(s.room_id, s.event.get("type"), s.body[:80]) for s in self.seen[-8:]]
                raise AssertionError(f"{self.user_id} waited {within} s in vain; saw {recent}")
            await self.sync(timeout_ms=500)

    def messages_in(self, room_id: str, sender: str | None = None) -> list[Seen]:
        """Messages (edits included) seen in a room, from one sender or anyone."""
        return [
            s
            for s in self.seen
            if s.room_id == room_id
            and s.event.get("type") == "m.room.message"
            and (sender is None or s.event.get("sender") == sender)
        ]

    async def say(
        self, room_id: str, text: str, *, thread: str | None = None, reply_to: str | None = None
    ) -> str:
        content: dict[str, Any] = {"msgtype": "m.text", "body": text}
        if thread:
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": thread,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": thread},
            }
        elif reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        return await self.send(room_id, "m.room.message", content)

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        return await self.send(room_id, "m.reaction", content)

    async def send(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        # As a real client would have: the latest members and devices (new keys) first.
        await self.sync()
        answer = await self.client.room_send(
            room_id, event_type, content, ignore_unverified_devices=True
        )
        assert isinstance(answer, RoomSendResponse), answer
        return answer.event_id

    async def create_room(self, name: str, invite: list[str], *, encrypted: bool = False) -> str:
        initial_state = []
        if encrypted:
            initial_state.append(
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                }
            )
        answer = await self.client.room_create(
            name=name,
            invite=invite,
            preset=RoomPreset.private_chat,
            initial_state=initial_state,
        )
        assert isinstance(answer, RoomCreateResponse), answer
        return answer.room_id

    async def join(self, room_id: str) -> None:
        answer = await self.client.join(room_id)
        assert isinstance(answer, JoinResponse), answer
        await self.sync()

    async def close(self) -> None:
        await self.client.close()


async def person(synapse: SynapseServer, localpart: str) -> Person:
    somebody = Person(await make_client(synapse, localpart))
    await somebody.sync()
    return somebody


def from_user(user_id: str, *, room_id: str | None = None, contains: str = "") -> Predicate:
    def match(room: str, event: dict[str, Any]) -> bool:
        if event.get("sender") != user_id or event.get("type") != "m.room.message":
            return False
        if room_id is not None and room != room_id:
            return False
        return contains in str(event.get("content", {}).get("body", ""))

    return match


def is_error(answer: object) -> bool:
    return isinstance(answer, ErrorResponse)
