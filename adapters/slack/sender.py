"""Delivers outbox rows to Slack through the Web API (chat.postMessage / update / delete).

The outbox worker owns pacing and retries; this sender makes one attempt per call and
translates Slack's answer into the port's errors, so the worker can decide what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import Block, render_blocks
from bot.addresses import split_address
from bot.delivery import (
    DeliveryError,
    HoldDelivery,
    Outgoing,
    PermanentFailure,
    RateLimited,
    TemporaryFailure,
)
from bot.messages import Message

log = logging.getLogger(__name__)

# The message metadata event type that carries the outbox key; only the opaque key goes in
# it because metadata is readable by anyone in the workspace.
METADATA_EVENT_TYPE = "fusionbot_outbox"
EPHEMERAL_REF_PREFIX = "ephemeral:"
# Slack: about one message per second per channel, short bursts allowed.
CHANNEL_INTERVAL = 1.0
HISTORY_LIMIT = 100
# How long an idle HTTP session stays open for the next call: a tip's card, the next
# tip's card, an edit right after, each reuse the connection instead of opening one
# (~0.5 ms on localhost, a TLS handshake to Slack).
IDLE_SESSION_SECONDS = 2.0
# The Web API method behind each outbox operation (rate limits are per method).
_METHODS = {"post": "chat.postMessage", "edit": "chat.update", "delete": "chat.delete"}

TokenLookup = Callable[[str], Awaitable[str | None]]

# A person must act (reinstall, re-authorise) before anything can reach the destination.
_HOLD_ERRORS = frozenset(
    {
        "token_revoked",
        "token_expired",
        "account_inactive",
        "invalid_auth",
        "not_authed",
        "team_access_not_granted",
        "missing_scope",
        "org_login_required",
        "ekm_access_denied",
    }
)
# Slack's own trouble: the same request may well work later.
_TEMPORARY_ERRORS = frozenset(
    {
        "fatal_error",
        "internal_error",
        "service_unavailable",
        "request_timeout",
        "timeout",
    }
)
# Everything else Slack refuses (channel_not_found, not_in_channel, is_archived,
# msg_too_long, invalid_blocks, message_not_found, cant_update_message, …) is permanent:
# sending the same request again gets the same answer.


@dataclass(frozen=True)
class _Place:
    """Where a target lives: the workspace's token (None: the client's own) and the
    channel id within it."""

    team_id: str | None
    token: str | None
    channel: str


class SlackSender:
    platform = "slack"

    def __init__(self, client: AsyncWebClient, token_for_team: TokenLookup | None = None) -> None:
        self._client = _without_hidden_retries(client)
        # Calls in flight share one HTTP session (kept-alive connections): a fan-out to
        # 1,000 channels opens about as many connections as it has calls at once, not one
        # per message. The session is ours only if the client came without one. It is
        # closed as soon as no call is in flight, so none outlives its calls; or, for an
        # owner that promises to call aclose() (the running outbox worker), once none has
        # been made for IDLE_SESSION_SECONDS.
        self._own_session = self._client.session is None
        self._in_flight = 0
        self._linger = 0.0
        self._last_call = 0.0
        self._closer: asyncio.Task[None] | None = None
        self._token_for_team = token_for_team
        # DM channel ids by (team, user): conversations.open once per person.
        self._dm_channels: dict[tuple[str | None, str], str] = {}
        self._rendered_message: Message | None = None
        self._rendered: tuple[list[Block], str] = ([], "")

    def min_interval(self, target: str) -> float:
        return CHANNEL_INTERVAL

    def rate_scope(self, target: str, op: str, *, ephemeral: bool) -> str:
        # Slack limits each method per workspace, and chat.postMessage also per channel
        # (a pace the worker keeps by itself, so a 429 there means the workspace-wide
        # limit): a 429 holds back that method in the target's workspace, not receipts
        # (chat.postEphemeral) nor other workspaces.
        rest = target.partition(":")[2]
        team = rest.partition("/")[0] if "/" in rest else ""
        method = _METHODS[op] if op != "post" or not ephemeral else "chat.postEphemeral"
        return f"{self.platform}:{team}/{method}"

    def _render(self, message: Message) -> tuple[list[Block], str]:
        """Block Kit for a message; the copies of one fan-out share one message object,
        rendered once (slack_sdk doesn't change the blocks it is given)."""
        if message is not self._rendered_message:
            self._rendered = render_blocks(message)
            self._rendered_message = message
        return self._rendered

    async def post(self, out: Outgoing) -> str:
        place = await self._place(out.target)
        blocks, text = self._render(out.message)
        if out.ephemeral_to is not None:
            user = _slack_user(out.ephemeral_to)
            answer = await self._call(
                "chat_postEphemeral",
                place,
                channel=place.channel,
                user=user,
                blocks=blocks,
                text=text,
            )
            # Ephemeral messages can't be edited, deleted or found again: the ref is a note.
            return f"{EPHEMERAL_REF_PREFIX}{place.channel}:{answer.get('message_ts', '')}"
        answer = await self._call(
            "chat_postMessage",
            place,
            channel=place.channel,
            blocks=blocks,
            text=text,
            metadata={"event_type": METADATA_EVENT_TYPE, "event_payload": {"key": out.key}},
        )
        return f"{answer['channel']}:{answer['ts']}"

    async def edit(self, out: Outgoing, ref: str) -> None:
        place, ts = await self._message_at(out, ref)
        blocks, text = render_blocks(out.message)
        await self._call(
            "chat_update", place, channel=place.channel, ts=ts, blocks=blocks, text=text
        )

    async def delete(self, out: Outgoing, ref: str) -> None:
        place, ts = await self._message_at(out, ref)
        await self._call("chat_delete", place, channel=place.channel, ts=ts)

    async def find_sent(self, out: Outgoing) -> str | None:
        if out.ephemeral_to is not None:
            return None  # never in history; resending one is harmless
        place = await self._place(out.target)
        try:
            answer = await self._call(
                "conversations_history",
                place,
                channel=place.channel,
                include_all_metadata=True,
                limit=HISTORY_LIMIT,
            )
        except PermanentFailure as exc:
            # Can't look (e.g. a channel the bot can't read): the post will say what's wrong.
            log.warning("can't check %s for an earlier copy of %s: %s", out.target, out.key, exc)
            return None
        for message in answer.get("messages") or []:
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == METADATA_EVENT_TYPE and payload.get("key") == out.key:
                return f"{place.channel}:{message['ts']}"
        return None

    # ------------------------------------------------------------------ targets

    async def _place(self, target: str) -> _Place:
        platform, rest = split_address(target)
        if platform != self.platform:
            raise PermanentFailure(f"{target} is not a Slack address")
        team_id: str | None = None
        token: str | None = None
        if "/" in rest:
            team_id, _, rest = rest.partition("/")
            token = await self._team_token(team_id)
        if rest[:1] in ("U", "W"):
            channel = await self._dm_channel(team_id, token, rest)
            return _Place(team_id, token, channel)
        if not rest:
            raise PermanentFailure(f"{target} names no channel")
        return _Place(team_id, token, rest)

    async def _team_token(self, team_id: str) -> str:
        if self._token_for_team is None:
            raise HoldDelivery(f"no installation lookup configured for Slack workspace {team_id}")
        token = await self._token_for_team(team_id)
        if not token:
            # Held, not dropped: installing the app in that workspace lets it through.
            raise HoldDelivery(f"fusionbot is not installed in Slack workspace {team_id}")
        return token

    async def _dm_channel(self, team_id: str | None, token: str | None, user: str) -> str:
        cached = self._dm_channels.get((team_id, user))
        if cached is not None:
            return cached
        answer = await self._call("conversations_open", _Place(team_id, token, user), users=user)
        channel = str(answer["channel"]["id"])
        self._dm_channels[(team_id, user)] = channel
        return channel

    async def _message_at(self, out: Outgoing, ref: str) -> tuple[_Place, str]:
        """The channel and ts of an earlier post; the ref names the channel actually
        posted to (a DM's D… id, not the person's U… id)."""
        if ref.startswith(EPHEMERAL_REF_PREFIX):
            raise PermanentFailure("an ephemeral message can't be edited or deleted")
        channel, sep, ts = ref.rpartition(":")
        if not sep or not channel or not ts:
            raise PermanentFailure(f"not a Slack message reference: {ref!r}")
        _, rest = split_address(out.target)
        team_id: str | None = None
        token: str | None = None
        if "/" in rest:
            team_id = rest.partition("/")[0]
            token = await self._team_token(team_id)
        return _Place(team_id, token, channel), ts

    # ------------------------------------------------------------------ calls

    async def _call(self, method: str, place: _Place, **kwargs: Any) -> Mapping[str, Any]:
        if place.token is not None:
            kwargs["token"] = place.token  # another workspace's installation
        try:
            response = await self._call_in_session(method, kwargs)
        except SlackApiError as exc:
            raise _delivery_error(method, exc) from exc
        except TimeoutError as exc:
            raise TemporaryFailure(f"{method}: timed out") from exc
        except aiohttp.ClientError as exc:
            raise TemporaryFailure(f"{method}: {type(exc).__name__}: {exc}") from exc
        data = response.data
        if not isinstance(data, Mapping):
            raise TemporaryFailure(f"{method}: unexpected answer from Slack")
        return data

    async def _call_in_session(self, method: str, kwargs: dict[str, Any]) -> Any:
        client = self._client
        if self._own_session and client.session is None:
            client.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=client.timeout),
                # As many connections as calls in flight (the worker bounds those).
                connector=aiohttp.TCPConnector(limit=0),
                trust_env=client.trust_env_in_session,
            )
        self._in_flight += 1
        try:
            return await getattr(client, method)(**kwargs)
        finally:
            self._in_flight -= 1
            if self._own_session and self._in_flight == 0:
                self._last_call = asyncio.get_running_loop().time()
                if not self._linger:
                    session, client.session = client.session, None
                    if session is not None:
                        await session.close()
                elif self._closer is None:
                    self._closer = asyncio.create_task(self._close_when_idle())

    async def _close_when_idle(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                idle = loop.time() - self._last_call
                if self._in_flight == 0 and idle >= self._linger:
                    break
                await asyncio.sleep(max(0.05, self._linger - idle))
        finally:
            # Also when cancelled (the event loop shutting down): close, don't leak it.
            self._closer = None
            session, self._client.session = self._client.session, None
            if session is not None:
                await session.close()

    def keep_connections(self) -> None:
        """Keep the HTTP session open between calls, for IDLE_SESSION_SECONDS; the caller
        promises to call aclose() before its event loop ends."""
        self._linger = IDLE_SESSION_SECONDS

    async def aclose(self) -> None:
        """Close the HTTP session now, and close it again after each burst of calls."""
        self._linger = 0.0
        if self._closer is not None:
            self._closer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._closer
        elif self._own_session and self._in_flight == 0 and self._client.session is not None:
            session, self._client.session = self._client.session, None
            await session.close()


def _without_hidden_retries(client: AsyncWebClient) -> AsyncWebClient:
    """A client like ``client`` minus slack_sdk's retry handlers for 429s and dropped
    connections: a hidden retry of chat.postMessage after a lost answer would post twice
    (no idempotency key), and 429s must reach the outbox, which paces the whole channel.
    A copy, so a client shared with the bolt app keeps its own settings."""
    unwanted = (AsyncRateLimitErrorRetryHandler, AsyncConnectionErrorRetryHandler)
    handlers = [h for h in client.retry_handlers if not isinstance(h, unwanted)]
    if len(handlers) == len(client.retry_handlers) and client.session is not None:
        return client  # nothing to remove, and its session is the caller's (never replaced)
    return AsyncWebClient(
        token=client.token,
        base_url=client.base_url,
        timeout=client.timeout,
        ssl=client.ssl,
        proxy=client.proxy,
        session=client.session,
        trust_env_in_session=client.trust_env_in_session,
        headers=dict(client.headers),
        team_id=client.default_params.get("team_id"),
        retry_handlers=handlers,
    )


def _slack_user(address: str) -> str:
    platform, rest = split_address(address)
    if platform != "slack":
        raise PermanentFailure(f"{address} is not a Slack user")
    return rest.rpartition("/")[2]


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for key, value in dict(headers).items():
        if str(key).lower() == name.lower():
            return str(value)
    return None


def _retry_after(headers: Any) -> float:
    raw = _header(headers, "Retry-After")
    try:
        seconds = float(raw) if raw is not None else 1.0
    except ValueError:
        seconds = 1.0
    return max(1.0, seconds)


def _delivery_error(method: str, exc: SlackApiError) -> DeliveryError:
    response = exc.response
    # A non-JSON answer leaves slack_sdk holding aiohttp's response (``status``).
    status = getattr(response, "status_code", None) or getattr(response, "status", None) or 0
    data = getattr(response, "data", None)
    error = str(data.get("error", "")) if isinstance(data, Mapping) else ""
    detail = f"{method}: {error or f'HTTP {status}'}"
    if status == 429 or error == "ratelimited":
        return RateLimited(_retry_after(getattr(response, "headers", None)), detail)
    if status >= 500 or error in _TEMPORARY_ERRORS:
        return TemporaryFailure(detail)
    if error in _HOLD_ERRORS:
        return HoldDelivery(detail)
    if not error:
        # No Slack error code (a proxy's page, an odd status): worth another try.
        return TemporaryFailure(detail)
    return PermanentFailure(detail)
