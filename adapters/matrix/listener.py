"""The Matrix sync loop: room events in, commands out to the core.

What it guarantees:

- Nothing replays and nothing is missed across restarts. The sync token of the last
  batch handled is saved in the database shortly after it (a second at most, coalescing
  busy moments, so the save never sits between a command and its answer), at once for a
  brand-new bot's first sync, and when the loop stops; a start resumes from it (commands
  sent while the bot was down are served), and a brand-new bot starts from "now" without
  acting on history. Events handled before a crash but after the last save come again
  after the next start: a command is recognised by its event id (``handled_events``,
  looked up only for what would be acted on and marked: chatter and tips, the bulk of the
  traffic, need no look-up) and not acted on twice; a tip is deduplicated by its event id
  where it is stored.
- It joins only the rooms the policy names (and direct chats people open with it from
  allowed servers); other invites are declined. Commands from servers the policy doesn't
  allow are ignored.
- ``!command`` text (not notices: other bots answer with those) becomes a Command; a
  reaction on one of the bot's messages becomes the command it stands for
  (``reactions.py``). In a card's thread the tip can be left out: ``!claim`` there means
  ``!claim T-n``. Answers go under the command, in its thread when it has one.
- Encrypted rooms: nio decrypts what it has keys for; a message it can't decrypt gets a
  polite answer and a key request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientError
from nio import (
    AsyncClient,
    ErrorResponse,
    InviteMemberEvent,
    JoinResponse,
    MegolmEvent,
    MessageDirection,
    ReactionEvent,
    RoomMessagesResponse,
    RoomMessageText,
    RoomResolveAliasResponse,
    SyncResponse,
)

from adapters.matrix.reactions import reaction_command, subject_of
from adapters.matrix.rooms import allowed_servers, policy_rooms, server_of
from adapters.matrix.session import DirectRooms, state_key
from bot.core import Core
from bot.errors import UserError
from bot.replies import ReplyTo, reply
from commands.context import Command
from commands.registry import REGISTRY
from commands.text import split_invocation
from storage import outbox_repo
from storage.bot_state_repo import get_state, put_state
from storage.handled_events_repo import first_time, was_handled

log = logging.getLogger(__name__)

Handle = Callable[[Command], Awaitable[bool]]

SYNC_TIMEOUT_MS = 30_000
# Missed events fetched after an outage, per room; older ones are left (and logged).
MAX_GAP_EVENTS = 2_000
MAX_BACKOFF = 60.0
# How long after a handled batch its sync token is saved (batches in between coalesce).
TOKEN_SAVE_DELAY = 1.0
# Lines a client quotes when someone replies to a message (the reply fallback).
_QUOTE = re.compile(r"^(> .*\n?)+\n?")
_REF = re.compile(r"^[TA]-?\d+\b", re.IGNORECASE)
# Each sync carries a little timeline per room; a gap beyond this is fetched in pages.
SYNC_FILTER: dict[str, Any] = {
    "room": {
        "timeline": {"limit": 100},
        "state": {"lazy_load_members": False},
        "ephemeral": {"not_types": ["*"]},
    },
    "presence": {"not_types": ["*"]},
}


class MatrixListener:
    def __init__(
        self, client: AsyncClient, core: Core, handle: Handle, direct: DirectRooms
    ) -> None:
        self.client = client
        self.core = core
        self.handle = handle
        self.direct = direct
        # Room id -> the address the policy uses for it (an alias stays an alias, so the
        # policy's channel checks match).
        self.addresses: dict[str, str] = {}
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._joined_for: object | None = None
        self._just_joined: set[str] = set()
        self._servers_for: object | None = None
        self._servers: frozenset[str] = frozenset()
        # The token of the last batch handled, and the last one saved.
        self._handled_token: str | None = None
        self._saved_token: str | None = None
        self._token_due = asyncio.Event()

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        """Sync until stopped. The first sync (full state) finishes before anything is
        acted on, so the bot knows its rooms, their members and encryption."""
        async with self.core.db.read() as conn:
            since = await get_state(conn, self._token_key)
        self._handled_token = self._saved_token = since
        fresh = since is None
        await self._quietly(self.direct.load())
        saver = asyncio.create_task(self._save_token_soon(), name="matrix-sync-token")
        try:
            await self._sync_loop(since, fresh)
        finally:
            saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await saver

    async def _sync_loop(self, since: str | None, fresh: bool) -> None:
        backoff = 1.0
        first = True
        while not self._stop.is_set():
            try:
                response = await self.client.sync(
                    timeout=0 if first else SYNC_TIMEOUT_MS,
                    since=since,
                    full_state=first,
                    sync_filter=self._sync_filter,
                )
            except (ClientError, TimeoutError) as exc:
                log.warning("matrix: sync failed (%s); retrying in %.0f s", exc, backoff)
                await self._pause(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if not isinstance(response, SyncResponse):
                wait = _error_wait(response, backoff)
                log.warning("matrix: sync refused: %s; retrying in %.0f s", response, wait)
                await self._pause(wait)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 1.0
            try:
                await self._handle_sync(response, since, first=first, fresh=fresh)
            except Exception:
                # The database or a handler failed: the token doesn't move, so the same
                # events come again; those already handled are recognised by their ids.
                log.exception("matrix: handling a sync failed; trying again")
                await self._pause(backoff)
                continue
            since = response.next_batch
            self._handled_token = since
            if first and fresh:
                # A new bot's "now" must outlive a crash, or it would act on history.
                await self.save_position()
            else:
                self._token_due.set()
            if first:
                first = False
                self.ready.set()
                log.info("matrix: in sync (%d policy rooms)", len(self.addresses))

    async def _handle_sync(
        self, response: SyncResponse, since: str | None, *, first: bool, fresh: bool
    ) -> None:
        self._just_joined.clear()
        if first or self._joined_for is not self.core.policy:  # at start and after a reload
            await self._join_policy_rooms()
        await self._handle_invites(response)
        if not (first and fresh):  # a new bot doesn't act on the rooms' history
            await self._handle_timelines(response, since)
        # Key upkeep after the commands, which shouldn't wait for it (sends that need keys
        # fetch what they lack themselves).
        await self._keys()

    async def save_position(self) -> None:
        """Save the token of the last batch handled, if it isn't saved yet. Called by the
        loop shortly after each batch, and by the runtime once the loop has stopped."""
        token = self._handled_token
        if token is None or token == self._saved_token:
            return
        # Not core.transaction: nothing is queued, so the outbox needn't wake.
        async with self.core.db.transaction() as conn:
            await put_state(conn, self._token_key, token)
        self._saved_token = token

    async def _save_token_soon(self) -> None:
        """Save the position a moment after a batch, off the path from a command to its
        answers (the outbox worker claims them meanwhile); a burst of batches is one save."""
        while True:
            await self._token_due.wait()
            await asyncio.sleep(TOKEN_SAVE_DELAY)
            self._token_due.clear()
            try:
                await self.save_position()
            except Exception:
                # The next batch tries again; until then a restart sees more events
                # again, which are recognised.
                log.exception("matrix: saving the sync position failed")

    @property
    def _sync_filter(self) -> dict[str, Any]:
        """Without the bot's own messages: it acts on none of them, and every one it sends
        would otherwise wake its sync to bring the message back (an alert to 100 rooms:
        100 of them, parsed while the rest are still being sent)."""
        timeline = {**SYNC_FILTER["room"]["timeline"], "not_senders": [self.client.user_id]}
        return {**SYNC_FILTER, "room": {**SYNC_FILTER["room"], "timeline": timeline}}

    def stop(self) -> None:
        self._stop.set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    @property
    def _token_key(self) -> str:
        return state_key(self.client.user_id, "next_batch")

    async def _keys(self) -> None:
        """What nio's own sync loop does between syncs for end-to-end encryption."""
        client = self.client
        if client.olm is None:
            return
        try:
            await client.send_to_device_messages()
            if client.should_upload_keys:
                await client.keys_upload()
            if client.should_query_keys:
                await client.keys_query()
            if client.should_claim_keys:
                await client.keys_claim(client.get_users_for_key_claiming())
        except (ClientError, TimeoutError) as exc:
            log.warning("matrix: key maintenance failed (%s); next sync tries again", exc)

    # ------------------------------------------------------------------ rooms

    async def _join_policy_rooms(self) -> None:
        policy = self.core.policy
        self._joined_for = policy
        for room in policy_rooms(policy):
            room_id = await self._room_id(room)
            if room_id is None:
                continue
            self.addresses[room_id] = f"matrix:{room}"
            if room_id in self.client.rooms:
                continue
            answer = await self._quietly(self.client.join(room_id))
            if isinstance(answer, JoinResponse):
                self._just_joined.add(room_id)
                log.info("matrix: joined %s", room)
            else:
                log.warning("matrix: can't join %s (%s); invite the bot there", room, answer)

    async def _room_id(self, room: str) -> str | None:
        if room.startswith("!"):
            return room
        answer = await self._quietly(self.client.room_resolve_alias(room))
        if isinstance(answer, RoomResolveAliasResponse):
            return answer.room_id
        log.warning("matrix: room alias %s does not resolve (%s)", room, answer)
        return None

    async def _handle_invites(self, response: SyncResponse) -> None:
        policy = self.core.policy
        wanted = {room_id for room_id in self.addresses} | {
            r for r in policy_rooms(policy) if r.startswith("!")
        }
        for room_id, info in response.rooms.invite.items():
            if room_id in self._just_joined:
                continue  # joined as a policy room a moment ago
            invite = _own_invite(info.invite_state, self.client.user_id)
            inviter = invite.sender if invite else ""
            direct = bool(invite and invite.content.get("is_direct"))
            if room_id in wanted:
                await self._quietly(self.client.join(room_id))
                log.info("matrix: joined %s (invited by %s)", room_id, inviter)
            elif direct and server_of(inviter) in self._allowed_servers():
                answer = await self._quietly(self.client.join(room_id))
                if isinstance(answer, JoinResponse):
                    await self.direct.remember(inviter, room_id)
                    log.info("matrix: direct chat with %s", inviter)
            else:
                await self._quietly(self.client.room_leave(room_id))
                log.info(
                    "matrix: declined an invite to %s from %s (not in the policy)",
                    room_id,
                    inviter,
                )

    # ------------------------------------------------------------------ events

    async def _handle_timelines(self, response: SyncResponse, since: str | None) -> None:
        for room_id, info in response.rooms.join.items():
            events = list(info.timeline.events)
            if info.timeline.limited and since is not None:
                # More happened than one sync carries (a long outage): fetch the gap.
                events = await self._gap(room_id, info.timeline.prev_batch, since) + events
            for event in events:
                if getattr(event, "sender", None) == self.client.user_id:
                    continue
                try:
                    await self._handle_event(room_id, event)
                except Exception:
                    # One bad event must not stop the room, nor the others.
                    log.exception("matrix: event %s in %s failed", event.event_id, room_id)

    async def _gap(self, room_id: str, before: str, since: str) -> list[Any]:
        """Events between the last saved token and this sync's timeline, oldest first."""
        found: list[Any] = []
        start = before
        while len(found) < MAX_GAP_EVENTS:
            answer = await self._quietly(
                self.client.room_messages(
                    room_id, start=start, end=since, direction=MessageDirection.back, limit=100
                )
            )
            if not isinstance(answer, RoomMessagesResponse):
                log.warning("matrix: could not fetch missed events in %s: %s", room_id, answer)
                break
            found.extend(answer.chunk)  # nio has decrypted what it can
            if not answer.chunk or not answer.end or answer.end == start:
                break
            start = answer.end
        return list(reversed(found))

    async def _handle_event(self, room_id: str, event: Any) -> None:
        if not isinstance(event, (RoomMessageText, ReactionEvent, MegolmEvent)):
            return
        if server_of(event.sender) not in self._allowed_servers():
            log.info(
                "matrix: ignored %s from %s (server not allowed)", event.event_id, event.sender
            )
            return
        if isinstance(event, RoomMessageText):
            acted = await self._on_text(room_id, event)
        elif isinstance(event, ReactionEvent):
            acted = await self._on_reaction(room_id, event)
        else:
            acted = await self._on_undecryptable(room_id, event)
        if acted:
            # The command's own transaction woke the outbox already.
            async with self.core.db.transaction() as conn:
                await first_time(conn, _seen_key(event), now=self.core.clock.now())

    async def _acted_on_before(self, event: Any) -> bool:
        """Whether a run that crashed before saving its sync position acted on this."""
        async with self.core.db.read() as conn:
            return await was_handled(conn, _seen_key(event))

    async def _on_text(self, room_id: str, event: RoomMessageText) -> bool:
        """Dispatch a command; True when it must be marked handled. Chatter needs no
        mark, and neither does a tip: it is stored under its event id already, and filing
        it again is a no-op."""
        content = event.source.get("content", {})
        relation = content.get("m.relates_to")
        if not isinstance(relation, dict):
            relation = {}  # absent, or not what the spec says: a plain message then
        if relation.get("rel_type") == "m.replace" or event.source.get("type") != "m.room.message":
            return False  # an edit of an earlier message: commands act once, as first sent
        if content.get("msgtype") != "m.text":
            return False
        text = _QUOTE.sub("", event.body, count=1)
        invocation = _safe_split(text)
        if invocation is None:
            if not self._is_direct(room_id) or not text.strip():
                return False  # chatter in a room is people talking to each other
            # Words in a direct chat are for the bot: the core answers them (once).
            if await self._acted_on_before(event):
                return False
            await self._dispatch(room_id, event.sender, text, event.event_id, event.event_id)
            return True
        root = relation.get("event_id") if relation.get("rel_type") == "m.thread" else None
        if root:
            text = await self._with_thread_subject(room_id, root, text, invocation)
        source_ref = f"{event.event_id}|{root}" if root else event.event_id
        is_tip = invocation[0] == "tip"
        if not is_tip and await self._acted_on_before(event):
            return False
        await self._dispatch(room_id, event.sender, text, source_ref, event.event_id)
        return not is_tip

    async def _on_reaction(self, room_id: str, event: ReactionEvent) -> bool:
        async with self.core.db.read() as conn:
            row = await outbox_repo.message_at(conn, f"{room_id}|{event.reacts_to}")
        if row is None:
            return False  # a reaction to someone else's message
        text = reaction_command(event.key, row.message, row.message_key)
        if text is None:
            return False
        # The answer goes into the reacted message's thread (or the thread it is in).
        root = _thread_root(row.message.reply_to) or event.reacts_to
        source_ref = f"{event.reacts_to}|{root}"
        if await self._acted_on_before(event):
            return False
        await self._dispatch(room_id, event.sender, text, source_ref, event.event_id)
        return True

    async def _on_undecryptable(self, room_id: str, event: MegolmEvent) -> bool:
        if await self._acted_on_before(event):
            return False
        with contextlib.suppress(Exception):
            await self.client.request_room_key(event)
        text = (
            "I couldn't decrypt that message: my device had no key for it. Please send it "
            "again; if this keeps happening, ask the room to allow fusionbot's device."
        )
        command = await self._command(room_id, event.sender, "", event.event_id, event.event_id)
        to = ReplyTo(command.actor, command.channel, command.is_dm, command.source_ref)
        async with self.core.transaction() as conn:
            await reply(conn, to, text, now=self.core.clock.now())
        return True

    async def _dispatch(
        self, room_id: str, sender: str, text: str, source_ref: str, event_id: str
    ) -> None:
        await self.handle(await self._command(room_id, sender, text, source_ref, event_id))

    def _is_direct(self, room_id: str) -> bool:
        return room_id in self.direct.rooms and room_id not in self.addresses

    async def _command(
        self, room_id: str, sender: str, text: str, source_ref: str, event_id: str
    ) -> Command:
        is_dm = self._is_direct(room_id)
        if is_dm and self.direct.by_person.get(sender) != room_id:
            await self.direct.remember(sender, room_id)  # answers go to the room they used
        return Command(
            actor=f"matrix:{sender}",
            channel=self.addresses.get(room_id, f"matrix:{room_id}"),
            text=text,
            is_dm=is_dm,
            source_key=f"matrix:{event_id}",
            source_ref=source_ref,
        )

    def _allowed_servers(self) -> frozenset[str]:
        """Worked out once per policy (every event asks)."""
        policy = self.core.policy
        if self._servers_for is not policy:
            self._servers = allowed_servers(policy, self.client.user_id)
            self._servers_for = policy
        return self._servers

    async def _with_thread_subject(
        self, room_id: str, root: str, text: str, invocation: tuple[str, str]
    ) -> str:
        """``!claim`` in a card's thread means ``!claim T-n``."""
        verb, args = invocation
        spec = REGISTRY.find(verb)
        if spec is None or _REF.match(args):
            return text
        async with self.core.db.read() as conn:
            row = await outbox_repo.message_at(conn, f"{room_id}|{root}")
        subject = subject_of(row.message_key) if row else None
        if subject is None or not spec.usage.startswith(subject[:2]):
            return text
        return f"!{verb} {subject} {args}".rstrip()

    async def _quietly(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except (ClientError, TimeoutError) as exc:
            return exc


def _seen_key(event: Any) -> str:
    return f"matrix:{event.event_id}"


def _own_invite(events: list[Any], user_id: str) -> InviteMemberEvent | None:
    for event in events:
        if isinstance(event, InviteMemberEvent) and event.state_key == user_id:
            return event
    return None


def _thread_root(reply_to: str | None) -> str | None:
    if not reply_to:
        return None
    _, _, root = reply_to.partition("|")
    return root or None


def _safe_split(text: str) -> tuple[str, str] | None:
    try:
        return split_invocation(text)
    except UserError:
        return ("", "")  # too long: the dispatcher says so politely


def _error_wait(response: ErrorResponse, backoff: float) -> float:
    if response.status_code == "M_LIMIT_EXCEEDED" and response.retry_after_ms:
        return response.retry_after_ms / 1000
    if response.status_code == "M_UNKNOWN_TOKEN":
        log.error("matrix: the bot's access token was revoked; log it in again")
        return MAX_BACKOFF
    return backoff
