"""Delivers outbox rows to Matrix rooms through matrix-nio.

The outbox worker owns pacing and retries; this sender makes one attempt per call and
translates the homeserver's answer into the port's errors.

Idempotency: every send uses the outbox key as the transaction id. A homeserver
deduplicates a repeated ``PUT /rooms/{room}/send/{type}/{txnId}`` from the same device and
answers with the first event's id, so a resend after a crash is harmless — provided the
bot's device id is stable across restarts (persist it). That is why ``find_sent`` answers
None: the resend itself is the lookup.

Targets: ``matrix:!room…`` (a room id, opaque: nothing after the ``matrix:`` prefix is
split), ``matrix:#alias:server`` (resolved) and ``matrix:@user:server`` (a person: a direct
room is created once, recorded in the account's ``m.direct`` and reused). Matrix has no
ephemeral messages: an answer to a command (its message has ``reply_to``) is a reply under
the command, where its author is looking; other rows with ``ephemeral_to`` go to that
person's direct room.

Encrypted rooms: nio encrypts for the members its sync has shown it, so a room must be
known from the sync before the first send; one joined or created moments ago arrives with
the next sync, which the sender waits for briefly.

Refs: ``<room_id>|<event_id>`` (event ids never contain ``|``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientError
from nio import (
    AsyncClient,
    ErrorResponse,
    LocalProtocolError,
    RoomCreateResponse,
    RoomRedactResponse,
    RoomResolveAliasResponse,
    RoomSendResponse,
    SendRetryError,
)
from nio.api import RoomPreset

from adapters.matrix.render import render_edit, render_matrix
from bot.addresses import split_address
from bot.delivery import (
    DeliveryError,
    HoldDelivery,
    Outgoing,
    PermanentFailure,
    RateLimited,
    TemporaryFailure,
)

log = logging.getLogger(__name__)

# Homeservers limit a user's messages across all rooms, not per room (Synapse's default
# for ordinary users is 0.2 messages/s, burst 10; operators exempt the bot with the admin
# API override_ratelimit). So no pace is imposed per room: the server's M_LIMIT_EXCEEDED
# answers (retry_after_ms) set the pace when there is one. A fixed gap per room would only
# delay cards that follow each other (measured: +150 ms per card in benchmarks/).
ROOM_INTERVAL = 0.0
REF_SEPARATOR = "|"
DEFAULT_RETRY_AFTER = 1.0
# nio retries dropped connections itself (safe: same transaction id); bound it so a dead
# homeserver surfaces as TemporaryFailure instead of hanging the worker.
MAX_TIMEOUTS = 2
# How long a send waits for the sync loop to show it a room it has just joined or created.
SYNC_WAIT = 10.0

# A person must act (log the bot in again, reactivate it) before anything gets through.
_HOLD_ERRORS = frozenset({"M_UNKNOWN_TOKEN", "M_MISSING_TOKEN", "M_USER_DEACTIVATED"})
_RATE_LIMITED = frozenset({"M_LIMIT_EXCEEDED"})
# Everything else with an error code below 500 (M_FORBIDDEN: not in the room or not
# allowed; M_NOT_FOUND; M_UNKNOWN; M_TOO_LARGE; M_BAD_JSON …) is permanent.


class MatrixSender:
    platform = "matrix"

    def __init__(
        self,
        client: AsyncClient,
        *,
        remember_direct: Callable[[str, str], Awaitable[None]] | None = None,
        direct_rooms: dict[str, str] | None = None,
    ) -> None:
        """``direct_rooms`` (person -> room) are the direct rooms known from the account's
        ``m.direct`` data; ``remember_direct`` records a new one there, so a restarted bot
        writes to the same room instead of opening another."""
        # 429s must reach the outbox, which paces the whole room; nio would otherwise
        # sleep and retry them itself, forever by default. The config is frozen: replace it.
        config = client.config
        changes: dict[str, Any] = {"max_limit_exceeded": 0}
        if config.max_timeouts is None:
            changes["max_timeouts"] = MAX_TIMEOUTS
        client.config = dataclasses.replace(config, **changes)
        self._client = client
        # Direct rooms by user id: created once per person, reused across restarts.
        self._dm_rooms: dict[str, str] = direct_rooms if direct_rooms is not None else {}
        self._remember_direct = remember_direct
        self._aliases: dict[str, str] = {}
        self._dm_lock = asyncio.Lock()

    def min_interval(self, target: str) -> float:
        return ROOM_INTERVAL

    def rate_scope(self, target: str, op: str, *, ephemeral: bool) -> str:
        # A homeserver limits the bot's account, in every room at once (Synapse's
        # rc_message): M_LIMIT_EXCEEDED in one room holds back all of them.
        return self.platform

    async def post(self, out: Outgoing) -> str:
        room_id = await self._room_for(out)
        await self._ensure_known(room_id)
        answer = await self._call(
            "room_send",
            self._client.room_send,
            room_id,
            "m.room.message",
            render_matrix(out.message),
            tx_id=out.key,
            ignore_unverified_devices=True,
        )
        assert isinstance(answer, RoomSendResponse)
        return f"{room_id}{REF_SEPARATOR}{answer.event_id}"

    async def edit(self, out: Outgoing, ref: str) -> None:
        room_id, event_id = parse_ref(ref)
        await self._ensure_known(room_id)
        await self._call(
            "room_send",
            self._client.room_send,
            room_id,
            "m.room.message",
            render_edit(out.message, event_id),
            tx_id=out.key,
            ignore_unverified_devices=True,
        )

    async def delete(self, out: Outgoing, ref: str) -> None:
        room_id, event_id = parse_ref(ref)
        answer = await self._call(
            "room_redact", self._client.room_redact, room_id, event_id, tx_id=out.key
        )
        assert isinstance(answer, RoomRedactResponse)

    async def find_sent(self, out: Outgoing) -> str | None:
        # The transaction id makes a resend from the same device idempotent (see module
        # docstring): resending is how an earlier copy is found.
        return None

    # ------------------------------------------------------------------ targets

    async def _room_for(self, out: Outgoing) -> str:
        # An answer to a command goes under the command; other private notes to a DM.
        private = out.ephemeral_to is not None and out.message.reply_to is None
        target = out.ephemeral_to if private and out.ephemeral_to else out.target
        platform, rest = _split(target)
        if platform != self.platform:
            raise PermanentFailure(f"{target} is not a Matrix address")
        if rest.startswith("!"):
            return rest
        if rest.startswith("@"):
            return await self._dm_room(rest)
        if rest.startswith("#"):
            return await self._resolve_alias(rest)
        raise PermanentFailure(f"{target} names no Matrix room or user")

    async def _dm_room(self, user_id: str) -> str:
        async with self._dm_lock:
            cached = self._dm_rooms.get(user_id)
            if cached is not None:
                return cached
            answer = await self._call(
                "room_create",
                self._client.room_create,
                is_direct=True,
                invite=[user_id],
                preset=RoomPreset.trusted_private_chat,
            )
            assert isinstance(answer, RoomCreateResponse)
            self._dm_rooms[user_id] = answer.room_id
            if self._remember_direct is not None:
                await self._remember_direct(user_id, answer.room_id)
            return answer.room_id

    async def _ensure_known(self, room_id: str) -> None:
        """An encrypting client must have seen a room in its sync before sending there."""
        client = self._client
        if client.olm is None or room_id in client.rooms:
            return
        answer = await self._call(
            "room_get_state_event",
            client.room_get_state_event,
            room_id,
            "m.room.member",
            client.user_id,
        )
        membership = answer.content.get("membership")
        if membership != "join":
            raise PermanentFailure(f"the bot is not in {room_id} ({membership}); invite it")
        if client.next_batch:  # a sync loop runs: the room arrives with its next answer
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SYNC_WAIT):
                    while room_id not in client.rooms:
                        await client.synced.wait()
            if room_id in client.rooms:
                return
        raise TemporaryFailure(f"{room_id}: waiting for the sync to show the room")

    async def _resolve_alias(self, alias: str) -> str:
        cached = self._aliases.get(alias)
        if cached is not None:
            return cached
        answer = await self._call("room_resolve_alias", self._client.room_resolve_alias, alias)
        assert isinstance(answer, RoomResolveAliasResponse)
        self._aliases[alias] = answer.room_id
        return answer.room_id

    # ------------------------------------------------------------------ calls

    async def _call(self, action: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            answer = await method(*args, **kwargs)
        except (ClientError, TimeoutError) as exc:
            raise TemporaryFailure(f"{action}: {type(exc).__name__}: {exc}") from exc
        except SendRetryError as exc:  # encrypted room: keys could not be shared yet
            raise TemporaryFailure(f"{action}: {exc}") from exc
        except LocalProtocolError as exc:  # not logged in, or an unknown encrypted room
            raise HoldDelivery(f"{action}: {exc}") from exc
        if isinstance(answer, ErrorResponse):
            raise delivery_error(action, answer)
        return answer


def _split(address: str) -> tuple[str, str]:
    try:
        return split_address(address)
    except ValueError as exc:
        raise PermanentFailure(str(exc)) from exc


def parse_ref(ref: str) -> tuple[str, str]:
    room_id, sep, event_id = ref.rpartition(REF_SEPARATOR)
    if not sep or not room_id.startswith("!") or not event_id.startswith("$"):
        raise PermanentFailure(f"not a Matrix message reference: {ref!r}")
    return room_id, event_id


def delivery_error(action: str, answer: ErrorResponse) -> DeliveryError:
    """The port's error for a homeserver's error answer."""
    transport = answer.transport_response
    status = int(getattr(transport, "status", 0) or 0)
    code = answer.status_code or ""
    detail = f"{action}: {code or f'HTTP {status}'} {answer.message}".rstrip()
    if code in _RATE_LIMITED or status == 429:
        retry_after = (answer.retry_after_ms or 0) / 1000 or DEFAULT_RETRY_AFTER
        return RateLimited(retry_after, detail)
    if code in _HOLD_ERRORS:
        return HoldDelivery(detail)
    if status >= 500 or not code:
        # The homeserver's trouble, or no Matrix error at all (a proxy's page).
        return TemporaryFailure(detail)
    return PermanentFailure(detail)
