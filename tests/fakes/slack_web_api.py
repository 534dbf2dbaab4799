"""A local fake of Slack's Web API that behaves like Slack where our code depends on it.

Point slack_sdk at it with `AsyncWebClient(token=..., base_url=fake.url)`. It is an HTTP
server on 127.0.0.1, so the real client, its retry handlers and its error parsing all run.

What it copies from Slack, and where that was checked (Slack's method reference at
docs.slack.dev, its mirror in slack-ruby/slack-api-ref, and the slack_sdk 3.x client):
- Transport: POST form-encoded or JSON, or GET with a query string. With a JSON body Slack
  takes the token only from `Authorization: Bearer`; a form body may carry it as `token`; a
  token in the query string is refused, as Slack does for apps created since February 2021.
- Errors are HTTP 200 with `{"ok": false, "error": ...}`; rate limits are HTTP 429 with an
  integer `Retry-After` header and `"error": "ratelimited"`.
- chat.postMessage paces each channel (Slack: about one message per second per channel,
  short bursts allowed, burst size unpublished), refuses more than 50 blocks, section text over
  3,000 characters, and posts nothing without text, blocks or attachments. Past 40,000
  characters of text Slack documents truncation and lists `msg_too_long`; the fake always
  refuses, so a test sees the overlong message instead of a silently shortened one. There is
  no idempotency key: a retry after a lost response posts twice (see `fail_next(delay=...)`).
- chat.update keeps blocks and metadata it is not given, and clears them when given empty.
- conversations.history lists parents newest first, not thread replies (those come from
  conversations.replies), and includes message metadata only with `include_all_metadata`.
  Slack's reference does not say what comes back without it; apps that read metadata report
  the payload missing, so the fake leaves metadata out: the trap an idempotency check falls
  into if it forgets the flag.
- views.open takes a trigger_id once, within 3 seconds of its issue.
- oauth.v2.access takes client credentials by HTTP Basic auth or form fields and answers with
  the shape of Slack's documented example.

- chat.postMessage's workspace-wide limit, when `workspace_per_minute` is given (Slack has
  one and publishes no figure): a token bucket per workspace beside each channel's, a post
  taking a token from both.

Not modelled: per-method tier limits other than chat.postMessage's, scopes, archived
channels, files, and token rotation.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import itertools
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, NamedTuple

from aiohttp import web

DEFAULT_TEAM_ID = "T0DEFAULT"
DEFAULT_TEAM_NAME = "Default Workspace"
DEFAULT_BOT_TOKEN = "xoxb-test"
DEFAULT_BOT_USER_ID = "U0DEFAULTBOT"
DEFAULT_APP_ID = "A0FAKEAPP01"
DEFAULT_APP_TOKEN = "xapp-test"  # app-level token for Socket Mode
DEFAULT_CLIENT_ID = "1111111111.2222222222"
DEFAULT_CLIENT_SECRET = "fake-client-secret"

MAX_TEXT_CHARS = 40_000
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT_CHARS = 3_000
MAX_SECTION_FIELDS = 10
MAX_HEADER_TEXT_CHARS = 150
MAX_ATTACHMENTS = 100
MAX_MPIM_USERS = 8
TRIGGER_TTL_SECONDS = 3.0
HISTORY_DEFAULT_LIMIT = 100
HISTORY_MAX_LIMIT = 999

# Message timestamps look like Slack's ("1700000000.000100") and only ever grow.
_TS_BASE_MICROS = 1_700_000_000_000_000
_TS_STEP_MICROS = 100

# Slack ids are upper case; channel names are lower case, so the two never collide.
_ID_PATTERN = re.compile(r"[CGD][A-Z0-9]+")
_SECRET_PARAMS = frozenset({"token", "client_secret"})
_NO_TOKEN_METHODS = frozenset({"oauth.v2.access"})

JSONDict = dict[str, Any]


class Call(NamedTuple):
    """One request as the fake received it (credentials removed)."""

    method: str
    params: JSONDict
    team_id: str | None


class SlackError(Exception):
    """An answer other than ok: an error code, and the HTTP status Slack uses for it."""

    def __init__(
        self,
        error: str,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        extra: JSONDict | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> JSONDict:
        return {"ok": False, "error": self.error, **self.extra}


def _ratelimited(retry_after_seconds: float) -> SlackError:
    # Slack sends whole seconds; slack_sdk's retry handler parses the header with int().
    seconds = max(1, math.ceil(retry_after_seconds))
    return SlackError("ratelimited", status=429, headers={"Retry-After": str(seconds)})


@dataclass
class _Workspace:
    team_id: str
    team_name: str
    bot_token: str
    bot_user_id: str
    bot_id: str
    scope: str


@dataclass
class _User:
    id: str
    team_id: str
    name: str
    real_name: str
    is_bot: bool = False
    email: str | None = None

    def to_api(self) -> JSONDict:
        profile: JSONDict = {
            "real_name": self.real_name,
            "display_name": self.name,
            "team": self.team_id,
        }
        if self.email is not None:
            profile["email"] = self.email
        return {
            "id": self.id,
            "team_id": self.team_id,
            "name": self.name,
            "deleted": False,
            "real_name": self.real_name,
            "tz": "America/New_York",
            "tz_label": "Eastern Standard Time",
            "tz_offset": -18000,
            "is_admin": False,
            "is_owner": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": 0,
            "profile": profile,
        }


@dataclass
class _Channel:
    id: str
    team_id: str
    name: str | None = None
    is_private: bool = False
    is_im: bool = False
    is_mpim: bool = False
    user: str | None = None  # the other person in a DM
    members: set[str] | None = None  # None: everyone is a member
    shared_with: set[str] = field(default_factory=set)
    created: int = 1_700_000_000

    def visible_to(self, team_id: str) -> bool:
        return team_id == self.team_id or team_id in self.shared_with

    def to_api(self) -> JSONDict:
        if self.is_im:
            return {
                "id": self.id,
                "created": self.created,
                "is_im": True,
                "is_org_shared": False,
                "user": self.user,
                "is_user_deleted": False,
                "is_open": True,
                "priority": 0,
                "context_team_id": self.team_id,
            }
        # Per Slack's reference, only legacy private channels (ids beginning with G) report
        # is_group instead of is_channel.
        legacy_group = self.id.startswith("G") and not self.is_mpim
        name = self.name or self.id.lower()
        return {
            "id": self.id,
            "name": name,
            "name_normalized": name,
            "is_channel": not self.is_mpim and not legacy_group,
            "is_group": legacy_group,
            "is_im": False,
            "is_mpim": self.is_mpim,
            "is_private": self.is_private or self.is_mpim,
            "created": self.created,
            "is_archived": False,
            "is_general": False,
            "is_shared": bool(self.shared_with),
            "is_ext_shared": bool(self.shared_with),
            "is_org_shared": False,
            "is_member": True,
            "context_team_id": self.team_id,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        }


@dataclass
class _Message:
    channel: str
    ts: str
    team_id: str
    user: str
    bot_id: str
    app_id: str
    text: str
    blocks: list[JSONDict] | None
    attachments: list[JSONDict] | None
    metadata: JSONDict | None
    thread_ts: str | None
    reply_broadcast: bool
    edited_ts: str | None = None
    deleted: bool = False
    revisions: list[JSONDict] = field(default_factory=list)  # earlier versions, oldest first

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    def to_api(self, *, include_metadata: bool, replies: list[_Message] | None = None) -> JSONDict:
        out: JSONDict = {
            "type": "message",
            "user": self.user,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": self.text,
            "ts": self.ts,
            "team": self.team_id,
        }
        if self.blocks is not None:
            out["blocks"] = copy.deepcopy(self.blocks)
        if self.attachments is not None:
            out["attachments"] = copy.deepcopy(self.attachments)
        if self.thread_ts is not None:
            out["thread_ts"] = self.thread_ts
        if self.is_reply and self.reply_broadcast:
            out["subtype"] = "thread_broadcast"
        if replies:
            out["thread_ts"] = self.ts
            out["reply_count"] = len(replies)
            out["reply_users"] = sorted({r.user for r in replies})
            out["reply_users_count"] = len(out["reply_users"])
            out["latest_reply"] = replies[-1].ts
        if self.edited_ts is not None:
            out["edited"] = {"user": self.user, "ts": self.edited_ts}
        if include_metadata and self.metadata:
            out["metadata"] = copy.deepcopy(self.metadata)
        return out


@dataclass
class _Content:
    text: str | None
    blocks: list[JSONDict] | None
    attachments: list[JSONDict] | None
    metadata: JSONDict | None  # None: not given; {}: given empty, which clears on update

    @property
    def empty(self) -> bool:
        return not self.text and not self.blocks and not self.attachments


@dataclass
class _Trigger:
    team_id: str
    user_id: str
    issued_at: float
    used: bool = False


@dataclass
class _PendingInstall:
    team_id: str
    team_name: str
    bot_token: str
    bot_user_id: str
    scope: str
    installer_user_id: str
    user_scope: str | None
    redirect_uri: str | None


@dataclass
class _Fault:
    status: int | None
    error: str | None
    delay: float
    retry_after: int
    remaining: int


@dataclass
class _Bucket:
    tokens: float
    updated_at: float


@dataclass
class _Ctx:
    method: str
    params: JSONDict
    workspace: _Workspace | None
    basic_auth: tuple[str, str] | None  # (client_id, client_secret)

    @property
    def ws(self) -> _Workspace:
        if self.workspace is None:  # pragma: no cover - guarded by the dispatcher
            raise SlackError("not_authed")
        return self.workspace


def _truthy(value: Any) -> bool:
    # slack_sdk turns booleans into "1"/"0" for query strings; JSON keeps true/false.
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    return isinstance(value, str) and value.strip().lower() in {"1", "true"}


def _opt_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _ts_key(ts: str, *, error: str) -> Decimal:
    try:
        return Decimal(ts)
    except InvalidOperation as exc:
        raise SlackError(error) from exc


def _json_field(params: JSONDict, name: str, *, error: str, kind: type) -> Any:
    """A structured argument: an object in a JSON body, a JSON string in a form body."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise SlackError(error) from exc
    if not isinstance(value, kind):
        raise SlackError(error)
    return value


def _invalid_blocks(message: str, pointer: str) -> SlackError:
    # Slack names the offending element with a JSON pointer, in both of these places.
    detail = f"{message} [json-pointer:{pointer}]"
    return SlackError(
        "invalid_blocks",
        extra={"errors": [detail], "response_metadata": {"messages": [f"[ERROR] {detail}"]}},
    )


def _check_blocks(blocks: list[Any], *, limit: int, root: str = "/blocks") -> list[JSONDict]:
    if len(blocks) > limit:
        raise _invalid_blocks(f"no more than {limit} items allowed", root)
    for index, block in enumerate(blocks):
        pointer = f"{root}/{index}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _invalid_blocks("must be an object with a type", pointer)
        text = block.get("text")
        text_value = text.get("text", "") if isinstance(text, dict) else ""
        if block["type"] == "section":
            fields = block.get("fields") or []
            if not text_value and not fields:
                raise _invalid_blocks("must provide text or fields", pointer)
            if len(text_value) > MAX_SECTION_TEXT_CHARS:
                raise _invalid_blocks(
                    f"must be less than {MAX_SECTION_TEXT_CHARS + 1} characters",
                    f"{pointer}/text/text",
                )
            if len(fields) > MAX_SECTION_FIELDS:
                raise _invalid_blocks(
                    f"no more than {MAX_SECTION_FIELDS} items allowed", f"{pointer}/fields"
                )
        elif block["type"] == "header" and len(text_value) > MAX_HEADER_TEXT_CHARS:
            raise _invalid_blocks(
                f"must be less than {MAX_HEADER_TEXT_CHARS + 1} characters",
                f"{pointer}/text/text",
            )
    return blocks


def _parse_content(params: JSONDict) -> _Content:
    text = _opt_str(params.get("text"))
    blocks = _json_field(params, "blocks", error="invalid_blocks_format", kind=list)
    attachments = _json_field(params, "attachments", error="invalid_attachments", kind=list)
    metadata = _json_field(params, "metadata", error="invalid_metadata_format", kind=dict)
    if text is not None and len(text) > MAX_TEXT_CHARS:
        raise SlackError("msg_too_long")
    if blocks is not None:
        _check_blocks(blocks, limit=MAX_MESSAGE_BLOCKS)
    if attachments is not None and len(attachments) > MAX_ATTACHMENTS:
        raise SlackError("too_many_attachments")
    if metadata:
        if not isinstance(metadata.get("event_type"), str) or not metadata["event_type"]:
            raise SlackError("invalid_metadata_format")
        if not isinstance(metadata.get("event_payload", {}), dict):
            raise SlackError("invalid_metadata_format")
        metadata = {
            "event_type": metadata["event_type"],
            "event_payload": metadata.get("event_payload", {}),
        }
    return _Content(text=text, blocks=blocks, attachments=attachments, metadata=metadata)


def _bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _basic_auth(request: web.Request) -> tuple[str, str] | None:
    # Parsed by hand: aiohttp 3.14 deprecates BasicAuth, and tests turn warnings into errors.
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("latin1")
    except (binascii.Error, ValueError):
        return None
    login, sep, password = decoded.partition(":")
    return (login, password) if sep else None


def _cursor_for(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _ts_from_cursor(cursor: str) -> Decimal:
    try:
        decoded = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise SlackError("invalid_cursor") from exc
    prefix, _, ts = decoded.partition(":")
    if prefix != "next_ts":
        raise SlackError("invalid_cursor")
    try:
        return Decimal(ts)
    except InvalidOperation as exc:
        raise SlackError("invalid_cursor") from exc


class FakeSlackWebAPI:
    """Slack's Web API on 127.0.0.1, with state a test can set up, inspect and break.

    One workspace exists from the start: team T0DEFAULT with bot token "xoxb-test".
    `strict_channels` / `strict_users`: unknown channels and users are errors, as in a real
    workspace; otherwise they spring into being on first mention, which keeps set-up short.
    `burst`: messages a channel takes at once before the pace applies. Slack allows short
    bursts but publishes no size, so the default is a small guess that tests reach quickly.
    `workspace_per_minute` / `workspace_burst`: chat.postMessage's workspace-wide limit
    (off unless given), messages per minute across a workspace's channels and how many it
    takes at once.
    `clock`: seconds, monotonic; pass `FakeMonotonic` to move the pace and trigger expiry.
    """

    def __init__(
        self,
        *,
        strict_channels: bool = False,
        strict_users: bool = False,
        per_channel_per_second: float = 1.0,
        burst: int = 3,
        workspace_per_minute: float | None = None,
        workspace_burst: int = 20,
        clock: Callable[[], float] = time.monotonic,
        app_id: str = DEFAULT_APP_ID,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
    ) -> None:
        if per_channel_per_second <= 0:
            raise ValueError("per_channel_per_second must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.strict_channels = strict_channels
        self.strict_users = strict_users
        self.per_channel_per_second = per_channel_per_second
        self.burst = burst
        self.workspace_per_minute = workspace_per_minute
        self.workspace_burst = workspace_burst
        self.app_id = app_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.calls: list[Call] = []

        self._clock = clock
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._stopping = asyncio.Event()

        self._workspaces: dict[str, _Workspace] = {}
        self._tokens: dict[str, str] = {}
        self._revoked: set[str] = set()
        self._users: dict[str, _User] = {}
        self._channels: dict[str, _Channel] = {}
        self._ims: dict[tuple[str, frozenset[str]], str] = {}
        self._messages: dict[str, list[_Message]] = {}
        self._posts: dict[str, list[JSONDict]] = {}
        self._updates: dict[str, list[JSONDict]] = {}
        self._deletions: dict[str, list[str]] = {}
        self._ephemerals: dict[str, list[JSONDict]] = {}
        self._views: dict[str, JSONDict] = {}
        self._opened_views: list[JSONDict] = []
        self._updated_views: list[JSONDict] = []
        self._home_views: dict[tuple[str, str], JSONDict] = {}
        self._triggers: dict[str, _Trigger] = {}
        self._installs: dict[str, _PendingInstall] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._storm_until: float | None = None
        self._serial = itertools.count(1)
        self._ts_serial = itertools.count(1)
        # Socket Mode: the app's WebSocket connections and what it sent back on them.
        self._sockets: list[web.WebSocketResponse] = []
        self.socket_replies: list[JSONDict] = []
        self._envelopes = itertools.count(1)

        self._handlers: dict[str, Callable[[_Ctx], JSONDict]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "conversations.info": self._conversations_info,
            "conversations.open": self._conversations_open,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "users.info": self._users_info,
            "oauth.v2.access": self._oauth_v2_access,
        }
        self.add_workspace(
            DEFAULT_TEAM_ID, DEFAULT_BOT_TOKEN, DEFAULT_BOT_USER_ID, DEFAULT_TEAM_NAME
        )

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("FakeSlackWebAPI already started")
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        app.router.add_get("/socket", self._socket)
        # A short shutdown: a request held by fail_next(delay=...) must not hold up stop().
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping.set()
        for socket in list(self._sockets):
            await socket.close()
        await runner.cleanup()

    async def __aenter__(self) -> FakeSlackWebAPI:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Base URL for `AsyncWebClient(base_url=...)`, ending in `/api/`."""
        if self._port is None or self._runner is None:
            raise RuntimeError("FakeSlackWebAPI is not started")
        return f"http://127.0.0.1:{self._port}/api/"

    # --------------------------------------------------------------- test set-up

    def add_workspace(
        self,
        team_id: str,
        bot_token: str,
        bot_user_id: str | None = None,
        team_name: str | None = None,
        *,
        scope: str = "chat:write,commands,im:write,channels:history,groups:history,users:read",
    ) -> None:
        """Install the app in a workspace: `bot_token` then authenticates as its bot."""
        bot_user_id = bot_user_id or f"U{team_id[1:]}BOT"
        workspace = _Workspace(
            team_id=team_id,
            team_name=team_name or team_id,
            bot_token=bot_token,
            bot_user_id=bot_user_id,
            bot_id=f"B{team_id[1:]}BOT",
            scope=scope,
        )
        self._workspaces[team_id] = workspace
        self._tokens[bot_token] = team_id
        self._revoked.discard(bot_token)
        self._users[bot_user_id] = _User(
            id=bot_user_id, team_id=team_id, name="fusionbot", real_name="fusionbot", is_bot=True
        )

    def revoke(self, token: str) -> None:
        """From now on the token answers `token_revoked` (the app was uninstalled)."""
        if token not in self._tokens:
            raise KeyError(f"unknown token {token!r}")
        self._revoked.add(token)

    def add_channel(
        self,
        channel_id: str,
        *,
        name: str | None = None,
        team_id: str = DEFAULT_TEAM_ID,
        is_private: bool = False,
        members: Iterable[str] | None = None,
        shared_with: Iterable[str] = (),
    ) -> None:
        """Register a channel; `shared_with` lists other teams that see it (Slack Connect)."""
        self._channels[channel_id] = _Channel(
            id=channel_id,
            team_id=team_id,
            name=name,
            is_private=is_private,
            members=set(members) if members is not None else None,
            shared_with=set(shared_with),
        )

    def add_user(
        self,
        user_id: str,
        *,
        name: str | None = None,
        real_name: str | None = None,
        team_id: str = DEFAULT_TEAM_ID,
        email: str | None = None,
        is_bot: bool = False,
    ) -> None:
        self._users[user_id] = _User(
            id=user_id,
            team_id=team_id,
            name=name or user_id.lower(),
            real_name=real_name or name or user_id,
            is_bot=is_bot,
            email=email,
        )

    def add_pending_install(
        self,
        code: str,
        *,
        team_id: str,
        team_name: str,
        bot_token: str | None = None,
        bot_user_id: str | None = None,
        scope: str = "chat:write,commands",
        installer_user_id: str = "U0INSTALLER",
        user_scope: str | None = None,
        redirect_uri: str | None = None,
    ) -> None:
        """A person approved the install: oauth.v2.access will exchange `code` once."""
        self._installs[code] = _PendingInstall(
            team_id=team_id,
            team_name=team_name,
            bot_token=bot_token or f"xoxb-{team_id.lower()}-{next(self._serial)}",
            bot_user_id=bot_user_id or f"U{team_id[1:]}BOT",
            scope=scope,
            installer_user_id=installer_user_id,
            user_scope=user_scope,
            redirect_uri=redirect_uri,
        )

    def issue_trigger_id(
        self, *, team_id: str = DEFAULT_TEAM_ID, user_id: str = "U0FAKEUSER"
    ) -> str:
        """A trigger_id as Slack sends with an interaction; views.open takes it within 3 s."""
        serial = next(self._serial)
        trigger_id = f"{10_000 + serial}.{98_765}.{serial:012x}"
        self._triggers[trigger_id] = _Trigger(team_id, user_id, issued_at=self._clock())
        return trigger_id

    def dm_channel_id(self, user_id: str, *, team_id: str = DEFAULT_TEAM_ID) -> str | None:
        """The DM channel id between the bot and `user_id`, once opened."""
        return self._ims.get((team_id, frozenset({user_id})))

    # ------------------------------------------------------------ fault injection

    def fail_next(
        self,
        method: str,
        *,
        status: int | None = None,
        error: str | None = None,
        times: int = 1,
        delay: float = 0.0,
        retry_after: int = 1,
    ) -> None:
        """Make the next `times` calls of `method` ("*": any method) misbehave.

        - `status=500` (or 503, 429...): that HTTP status with a Slack error body.
        - `error="..."`: HTTP 200 with that error; "ratelimited" becomes a 429.
        - `delay=seconds`: answer late. Without status or error the call then succeeds, as
          when a client times out but Slack has already posted: the message exists.
        """
        if status is None and error is None and delay <= 0:
            raise ValueError("fail_next needs a status, an error or a delay")
        if times < 1:
            raise ValueError("times must be at least 1")
        fault = _Fault(status, error, delay, max(1, retry_after), times)
        self._faults.setdefault(method, deque()).append(fault)

    def rate_limit_storm(self, seconds: float) -> None:
        """Every call answers 429 until `seconds` have passed on the fake's clock."""
        self._storm_until = self._clock() + seconds

    # ------------------------------------------------------------------ inspection

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def messages(self, channel: str) -> list[JSONDict]:
        """What the channel holds now, thread replies included: edits applied, deletions
        gone, oldest first, with metadata."""
        live = [m for m in self._messages.get(channel, []) if not m.deleted]
        return [m.to_api(include_metadata=True) for m in live]

    def posts(self, channel: str) -> list[JSONDict]:
        """Each accepted chat.postMessage to the channel, as it was when posted."""
        return copy.deepcopy(self._posts.get(channel, []))

    def updates(self, channel: str) -> list[JSONDict]:
        """Each accepted chat.update in the channel: the message as the edit left it."""
        return copy.deepcopy(self._updates.get(channel, []))

    def revisions(self, channel: str, ts: str) -> list[JSONDict]:
        """Every version of one message, oldest first, the current one last."""
        message = self._find_message(channel, ts)
        if message is None:
            raise KeyError(f"no message {ts} in {channel}")
        current = message.to_api(include_metadata=True)
        return [*copy.deepcopy(message.revisions), current]

    def deletions(self, channel: str) -> list[str]:
        return list(self._deletions.get(channel, []))

    def ephemerals(self, channel: str) -> list[JSONDict]:
        return copy.deepcopy(self._ephemerals.get(channel, []))

    def opened_views(self) -> list[JSONDict]:
        return copy.deepcopy(self._opened_views)

    def updated_views(self) -> list[JSONDict]:
        return copy.deepcopy(self._updated_views)

    def home_view(self, user_id: str, *, team_id: str = DEFAULT_TEAM_ID) -> JSONDict | None:
        view = self._home_views.get((team_id, user_id))
        return copy.deepcopy(view) if view is not None else None

    # --------------------------------------------------------------- Socket Mode

    @property
    def socket_connected(self) -> bool:
        return bool(self._sockets)

    async def send_envelope(self, kind: str, payload: JSONDict) -> str:
        """Deliver a request over Socket Mode as Slack does (``slash_commands``,
        ``interactive``, ``events_api``); returns the envelope id the app must ack."""
        if not self._sockets:
            raise RuntimeError("no Socket Mode connection")
        envelope_id = f"envelope-{next(self._envelopes)}"
        await self._sockets[0].send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": kind != "events_api",
                "retry_attempt": 0,
                "retry_reason": "",
            }
        )
        return envelope_id

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets),
                "debug_info": {"host": "fake", "approximate_connection_time": 3600},
                "connection_info": {"app_id": self.app_id},
            }
        )
        try:
            async for message in socket:
                if message.type == web.WSMsgType.TEXT:
                    self.socket_replies.append(json.loads(message.data))
        finally:
            self._sockets.remove(socket)
        return socket

    # --------------------------------------------------------------- HTTP plumbing

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            params, form_token = await self._read_params(request)
        except SlackError as exc:
            self.calls.append(Call(method, {}, None))
            return self._respond(exc)
        token = _bearer_token(request) or form_token
        team_id = self._tokens.get(token) if token else None
        # A copy, so what the test inspects is what was sent, whatever the fake does later.
        public = copy.deepcopy({k: v for k, v in params.items() if k not in _SECRET_PARAMS})
        self.calls.append(Call(method, public, team_id))
        try:
            await self._misbehave(method)
            if method == "apps.connections.open":
                # Socket Mode: only the app-level token opens a connection.
                if token != DEFAULT_APP_TOKEN:
                    raise SlackError("invalid_auth")
                return web.json_response({"ok": True, "url": f"ws://127.0.0.1:{self._port}/socket"})
            handler = self._handlers.get(method)
            if handler is None:
                # Loud on purpose: a method the fake lacks is a gap in the fake, not in the app.
                raise SlackError("unknown_method", status=404, extra={"req_method": method})
            workspace = None if method in _NO_TOKEN_METHODS else self._authenticate(token)
            body = handler(_Ctx(method, params, workspace, _basic_auth(request)))
        except SlackError as exc:
            return self._respond(exc)
        return web.json_response({"ok": True, **body})

    @staticmethod
    def _respond(exc: SlackError) -> web.Response:
        return web.json_response(exc.body(), status=exc.status, headers=exc.headers)

    async def _read_params(self, request: web.Request) -> tuple[JSONDict, str | None]:
        params: JSONDict = {k: v for k, v in request.query.items() if k != "token"}
        form_token: str | None = None
        if request.method != "POST" or not request.body_exists:
            return params, None
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError as exc:
                raise SlackError("invalid_arguments") from exc
            if not isinstance(body, dict):
                raise SlackError("invalid_arguments")
            # Slack reads a JSON body's token only from the Authorization header.
            body.pop("token", None)
            params.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            fields = {k: v if isinstance(v, str) else str(v) for k, v in form.items()}
            form_token = fields.pop("token", None)
            params.update(fields)
        elif request.content_type in ("", "application/octet-stream"):
            raise SlackError("missing_post_type")
        else:
            raise SlackError("invalid_post_type")
        return params, form_token

    def _authenticate(self, token: str | None) -> _Workspace:
        if not token:
            raise SlackError("not_authed")
        team_id = self._tokens.get(token)
        if team_id is None:
            raise SlackError("invalid_auth")
        if token in self._revoked:
            raise SlackError("token_revoked")
        return self._workspaces[team_id]

    async def _misbehave(self, method: str) -> None:
        if self._storm_until is not None:
            remaining = self._storm_until - self._clock()
            if remaining > 0:
                raise _ratelimited(remaining)
            self._storm_until = None
        fault = self._take_fault(method)
        if fault is None:
            return
        if fault.delay > 0:
            # Woken early by stop(), so a held request never outlives the server.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=fault.delay)
        if fault.status == 429 or (fault.status is None and fault.error == "ratelimited"):
            raise _ratelimited(fault.retry_after)
        if fault.status is not None:
            default = "service_unavailable" if fault.status == 503 else "internal_error"
            raise SlackError(fault.error or default, status=fault.status)
        if fault.error is not None:
            raise SlackError(fault.error)

    def _take_fault(self, method: str) -> _Fault | None:
        for key in (method, "*"):
            queue = self._faults.get(key)
            if queue:
                fault = queue[0]
                fault.remaining -= 1
                if fault.remaining == 0:
                    queue.popleft()
                return fault
        return None

    # -------------------------------------------------------------------- helpers

    def _next_ts(self) -> str:
        micros = _TS_BASE_MICROS + next(self._ts_serial) * _TS_STEP_MICROS
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}0FAKE{next(self._serial):05d}"

    def _take_post_slot(self, team_id: str, channel_id: str) -> None:
        """Slack's per-channel pace for chat.postMessage, and its workspace-wide limit when
        one is set, as token buckets: a post takes a token from each, or from none."""
        limits = [((team_id, channel_id), float(self.burst), self.per_channel_per_second)]
        if self.workspace_per_minute is not None:
            per_second = self.workspace_per_minute / 60
            limits.append(((team_id, "*"), float(self.workspace_burst), per_second))
        buckets = [self._refilled(key, size, rate) for key, size, rate in limits]
        waits = [(1.0 - b.tokens) / rate for b, (_, _, rate) in zip(buckets, limits, strict=True)]
        if max(waits) > 0:
            raise _ratelimited(max(waits))
        for bucket in buckets:
            bucket.tokens -= 1.0

    def _refilled(self, key: tuple[str, str], size: float, per_second: float) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=size, updated_at=now)
        elapsed = max(0.0, now - bucket.updated_at)
        bucket.tokens = min(size, bucket.tokens + elapsed * per_second)
        bucket.updated_at = now
        return bucket

    def _resolve_channel(self, ws: _Workspace, raw: Any, *, allow_user: bool) -> _Channel:
        if not isinstance(raw, str) or not raw:
            raise SlackError("channel_not_found")
        if allow_user and raw[0] in "UW":
            # Posting to a user id posts into the app's DM with that person.
            try:
                return self._open_conversation(ws, [raw])[0]
            except SlackError as exc:
                raise SlackError("channel_not_found") from exc
        channel = self._channels.get(raw)
        if channel is None and not _ID_PATTERN.fullmatch(raw):
            wanted = raw.removeprefix("#")
            channel = next(
                (
                    c
                    for c in self._channels.values()
                    if c.name == wanted and c.visible_to(ws.team_id)
                ),
                None,
            )
        if channel is not None:
            if not channel.visible_to(ws.team_id):
                raise SlackError("channel_not_found")
            return channel
        if self.strict_channels:
            raise SlackError("channel_not_found")
        if _ID_PATTERN.fullmatch(raw):
            channel = _Channel(id=raw, team_id=ws.team_id, is_im=raw.startswith("D"))
        else:
            channel = _Channel(id=self._new_id("C"), team_id=ws.team_id, name=raw.removeprefix("#"))
        self._channels[channel.id] = channel
        return channel

    def _find_message(self, channel_id: str, ts: str | None) -> _Message | None:
        if ts is None:
            return None
        for message in self._messages.get(channel_id, []):
            if message.ts == ts and not message.deleted:
                return message
        return None

    def _replies(self, channel_id: str, parent_ts: str) -> list[_Message]:
        return [
            m
            for m in self._messages.get(channel_id, [])
            if not m.deleted and m.is_reply and m.thread_ts == parent_ts
        ]

    def _user(self, ws: _Workspace, user_id: str) -> _User:
        user = self._users.get(user_id)
        if user is None:
            if self.strict_users:
                raise SlackError("user_not_found")
            user = _User(id=user_id, team_id=ws.team_id, name=user_id.lower(), real_name=user_id)
            self._users[user_id] = user
        return user

    def _open_conversation(self, ws: _Workspace, user_ids: list[str]) -> tuple[_Channel, bool]:
        """The DM (one user) or group DM (several) with the bot; True if it already existed."""
        if len(user_ids) > MAX_MPIM_USERS:
            raise SlackError("too_many_users")
        for user_id in user_ids:
            self._user(ws, user_id)
        key = (ws.team_id, frozenset(user_ids))
        existing = self._ims.get(key)
        if existing is not None:
            return self._channels[existing], True
        if len(user_ids) == 1:
            channel = _Channel(
                id=self._new_id("D"), team_id=ws.team_id, is_im=True, user=user_ids[0]
            )
        else:
            channel = _Channel(
                id=self._new_id("C"),
                team_id=ws.team_id,
                name="mpdm-" + "--".join(sorted(user_ids)),
                is_mpim=True,
                members={*user_ids, ws.bot_user_id},
            )
        self._channels[channel.id] = channel
        self._ims[key] = channel.id
        return channel, False

    # -------------------------------------------------------------------- methods

    def _auth_test(self, ctx: _Ctx) -> JSONDict:
        ws = ctx.ws
        slug = re.sub(r"[^a-z0-9]+", "-", ws.team_name.lower()).strip("-") or ws.team_id.lower()
        return {
            "url": f"https://{slug}.slack.com/",
            "team": ws.team_name,
            "user": self._users[ws.bot_user_id].name,
            "team_id": ws.team_id,
            "user_id": ws.bot_user_id,
            "bot_id": ws.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, ctx: _Ctx) -> JSONDict:
        ws = ctx.ws
        channel = self._resolve_channel(ws, ctx.params.get("channel"), allow_user=True)
        content = _parse_content(ctx.params)
        if content.empty:
            raise SlackError("no_text")
        # Slack paces messages posted; a refused message posts nothing, so it spends nothing.
        self._take_post_slot(ws.team_id, channel.id)
        message = _Message(
            channel=channel.id,
            ts=self._next_ts(),
            team_id=ws.team_id,
            user=ws.bot_user_id,
            bot_id=ws.bot_id,
            app_id=self.app_id,
            text=content.text or "",
            blocks=content.blocks,
            attachments=content.attachments,
            metadata=content.metadata or None,
            thread_ts=_opt_str(ctx.params.get("thread_ts")),
            reply_broadcast=_truthy(ctx.params.get("reply_broadcast")),
        )
        self._messages.setdefault(channel.id, []).append(message)
        snapshot = message.to_api(include_metadata=True)
        self._posts.setdefault(channel.id, []).append(snapshot)
        return {"channel": channel.id, "ts": message.ts, "message": copy.deepcopy(snapshot)}

    def _chat_update(self, ctx: _Ctx) -> JSONDict:
        ws = ctx.ws
        channel = self._resolve_channel(ws, ctx.params.get("channel"), allow_user=False)
        message = self._find_message(channel.id, _opt_str(ctx.params.get("ts")))
        if message is None:
            raise SlackError("message_not_found")
        if message.team_id != ws.team_id or message.user != ws.bot_user_id:
            raise SlackError("cant_update_message")
        content = _parse_content(ctx.params)
        if content.text is None and content.blocks is None and content.attachments is None:
            raise SlackError("no_text")
        message.revisions.append(message.to_api(include_metadata=True))
        if content.text is not None:
            message.text = content.text
        # Slack's documented rule: an omitted field keeps its value, an empty one clears it.
        if content.blocks is not None:
            message.blocks = content.blocks or None
        if content.attachments is not None:
            message.attachments = content.attachments or None
        if content.metadata is not None:
            message.metadata = content.metadata or None
        message.edited_ts = self._next_ts()
        snapshot = message.to_api(include_metadata=True)
        self._updates.setdefault(channel.id, []).append(snapshot)
        return {
            "channel": channel.id,
            "ts": message.ts,
            "text": message.text,
            "message": copy.deepcopy(snapshot),
        }

    def _chat_delete(self, ctx: _Ctx) -> JSONDict:
        ws = ctx.ws
        channel = self._resolve_channel(ws, ctx.params.get("channel"), allow_user=False)
        message = self._find_message(channel.id, _opt_str(ctx.params.get("ts")))
        if message is None:
            raise SlackError("message_not_found")
        if message.team_id != ws.team_id or message.user != ws.bot_user_id:
            raise SlackError("cant_delete_message")
        message.deleted = True
        self._deletions.setdefault(channel.id, []).append(message.ts)
        return {"channel": channel.id, "ts": message.ts}

    def _chat_post_ephemeral(self, ctx: _Ctx) -> JSONDict:
        ws = ctx.ws
        channel = self._resolve_channel(ws, ctx.params.get("channel"), allow_user=False)
        user_id = _opt_str(ctx.params.get("user"))
        if user_id is None:
            raise SlackError("user_not_in_channel")
        if channel.members is not None and user_id not in channel.members:
            raise SlackError("user_not_in_channel")
        content = _parse_content(ctx.params)
        if content.empty:
            raise SlackError("no_text")
        message_ts = self._next_ts()
        record: JSONDict = {
            "message_ts": message_ts,
            "channel": channel.id,
            "user": user_id,
            "text": content.text or "",
            "team": ws.team_id,
        }
        if content.blocks is not None:
            record["blocks"] = content.blocks
        thread_ts = _opt_str(ctx.params.get("thread_ts"))
        if thread_ts is not None:
            record["thread_ts"] = thread_ts
        self._ephemerals.setdefault(channel.id, []).append(record)
        return {"message_ts": message_ts}

    def _parse_view(self, ctx: _Ctx, *, allowed_types: tuple[str, ...]) -> JSONDict:
        view = _json_field(ctx.params, "view", error="invalid_arguments", kind=dict)
        if view is None or view.get("type") not in allowed_types:
            raise SlackError("invalid_arguments")
        if view["type"] == "modal" and not isinstance(view.get("title"), dict):
            raise SlackError("invalid_arguments")
        blocks = view.get("blocks", [])
        if not isinstance(blocks, list):
            raise SlackError("invalid_arguments")
        _check_blocks(blocks, limit=MAX_VIEW_BLOCKS, root="/view/blocks")
        return view

    def _render_view(self, ws: _Workspace, view_id: str, view: JSONDict, root_id: str) -> JSONDict:
        return {
            "id": view_id,
            "team_id": ws.team_id,
            "type": view["type"],
            "title": copy.deepcopy(view.get("title")),
            "submit": copy.deepcopy(view.get("submit")),
            "close": copy.deepcopy(view.get("close")),
            "blocks": copy.deepcopy(view.get("blocks", [])),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""),
            "state": {"values": {}},
            "hash": f"{_TS_BASE_MICROS // 1_000_000}.{next(self._serial):08x}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "root_view_id": root_id,
            "previous_view_id": None,
            "app_id": self.app_id,
            "bot_id": ws.bot_id,
        }

    def _external_id_taken(self, ws: _Workspace, external_id: str, *, other_than: str) -> bool:
        return any(
            v["team_id"] == ws.team_id and v["external_id"] == external_id and v["id"] != other_than
            for v in self._views.values()
        )

    def _views_open(self, ctx: _Ctx) -> JSONDict:
        ws = ctx.ws
        trigger_id = _opt_str(ctx.params.get("trigger_id"))
        if trigger_id is None:
            raise SlackError(
                "invalid_arguments",
                extra={"response_metadata": {"messages": ["invalid `trigger_id`"]}},
            )
        trigger = self._triggers.get(trigger_id)
        if trigger is None or trigger.team_id != ws.team_id:
            raise SlackError("invalid_trigger_id")
        if trigger.used:
            raise SlackError("exchanged_trigger_id")
        if self._clock() - trigger.issued_at >= TRIGGER_TTL_SECONDS:
            raise SlackError("expired_trigger_id")
        view = self._parse_view(ctx, allowed_types=("modal",))
        view_id = self._new_id("V")
        if view.get("external_id") and self._external_id_taken(
            ws, view["external_id"], other_than=view_id
        ):
            raise SlackError("duplicate_external_id")
        trigger.used = True
        rendered = self._render_view(ws, view_id, view, root_id=view_id)
        self._views[view_id] = rendered
        self._opened_views.append(copy.deepcopy(rendered))
        return {"view": copy.deepcopy(rendered)}

    def _views_update(self, ctx: _Ctx) -> JSONDict:
        ws = ctx.ws
        view_id = _opt_str(ctx.params.get("view_id"))
        external_id = _opt_str(ctx.params.get("external_id"))
        if view_id is None and external_id is None:
            raise SlackError("invalid_arguments")
        current = self._views.get(view_id) if view_id is not None else None
        if current is None and external_id is not None:
            current = next(
                (
                    v
                    for v in self._views.values()
                    if v["team_id"] == ws.team_id and v["external_id"] == external_id
                ),
                None,
            )
        if current is None or current["team_id"] != ws.team_id:
            raise SlackError("not_found")
        expected_hash = _opt_str(ctx.params.get("hash"))
        if expected_hash is not None and expected_hash != current["hash"]:
            raise SlackError("hash_conflict")
        view = self._parse_view(ctx, allowed_types=("modal", "home"))
        if view.get("external_id") and self._external_id_taken(
            ws, view["external_id"], other_than=current["id"]
        ):
            raise SlackError("duplicate_external_id")
        rendered = self._render_view(ws, current["id"], view, root_id=current["root_view_id"])
        self._views[current["id"]] = rendered
        self._updated_views.append(copy.deepcopy(rendered))
        return {"view": copy.deepcopy(rendered)}

    def _views_publish(self, ctx: _Ctx) -> JSONDict:
        ws = ctx.ws
        user_id = _opt_str(ctx.params.get("user_id"))
        if user_id is None:
            raise SlackError("invalid_arguments")
        self._user(ws, user_id)
        view = self._parse_view(ctx, allowed_types=("home",))
        previous = self._home_views.get((ws.team_id, user_id))
        expected_hash = _opt_str(ctx.params.get("hash"))
        if previous is not None and expected_hash is not None and expected_hash != previous["hash"]:
            raise SlackError("hash_conflict")
        view_id = previous["id"] if previous is not None else self._new_id("V")
        rendered = self._render_view(ws, view_id, view, root_id=view_id)
        self._home_views[(ws.team_id, user_id)] = rendered
        return {"view": copy.deepcopy(rendered)}

    def _conversations_info(self, ctx: _Ctx) -> JSONDict:
        channel = self._resolve_channel(ctx.ws, ctx.params.get("channel"), allow_user=False)
        return {"channel": channel.to_api()}

    def _conversations_open(self, ctx: _Ctx) -> JSONDict:
        ws = ctx.ws
        users_param = _opt_str(ctx.params.get("users"))
        channel_param = _opt_str(ctx.params.get("channel"))
        if users_param is not None:
            user_ids = [u.strip() for u in users_param.split(",") if u.strip()]
            if not user_ids:
                raise SlackError("users_list_not_supplied")
            channel, existed = self._open_conversation(ws, user_ids)
        elif channel_param is not None:
            channel = self._resolve_channel(ws, channel_param, allow_user=False)
            if not (channel.is_im or channel.is_mpim):
                raise SlackError("method_not_supported_for_channel_type")
            existed = True
        else:
            raise SlackError("users_list_not_supplied")
        body: JSONDict = {}
        if existed:
            body.update(no_op=True, already_open=True)
        full = existed or _truthy(ctx.params.get("return_im"))
        body["channel"] = channel.to_api() if full else {"id": channel.id}
        return body

    def _conversations_history(self, ctx: _Ctx) -> JSONDict:
        channel = self._resolve_channel(ctx.ws, ctx.params.get("channel"), allow_user=False)
        include_metadata = _truthy(ctx.params.get("include_all_metadata"))
        limit = self._limit(ctx.params)
        inclusive = _truthy(ctx.params.get("inclusive"))
        oldest_raw = _opt_str(ctx.params.get("oldest"))
        latest_raw = _opt_str(ctx.params.get("latest"))
        oldest = _ts_key(oldest_raw, error="invalid_ts_oldest") if oldest_raw else None
        latest = _ts_key(latest_raw, error="invalid_ts_latest") if latest_raw else None
        cursor = _opt_str(ctx.params.get("cursor"))
        before = _ts_from_cursor(cursor) if cursor is not None else None

        def wanted(m: _Message) -> bool:
            key = Decimal(m.ts)
            if oldest is not None and (key < oldest or (key == oldest and not inclusive)):
                return False
            if latest is not None and (key > latest or (key == latest and not inclusive)):
                return False
            return before is None or key < before

        # History holds thread parents and broadcast replies; other replies only in .replies.
        shown = [
            m
            for m in self._messages.get(channel.id, [])
            if not m.deleted and (not m.is_reply or m.reply_broadcast) and wanted(m)
        ]
        shown.sort(key=lambda m: Decimal(m.ts), reverse=True)
        page, rest = shown[:limit], shown[limit:]
        body: JSONDict = {
            "messages": [
                m.to_api(include_metadata=include_metadata, replies=self._replies(channel.id, m.ts))
                for m in page
            ],
            "has_more": bool(rest),
            "pin_count": 0,
        }
        if rest:
            body["response_metadata"] = {"next_cursor": _cursor_for(page[-1].ts)}
        return body

    def _conversations_replies(self, ctx: _Ctx) -> JSONDict:
        channel = self._resolve_channel(ctx.ws, ctx.params.get("channel"), allow_user=False)
        include_metadata = _truthy(ctx.params.get("include_all_metadata"))
        parent = self._find_message(channel.id, _opt_str(ctx.params.get("ts")))
        if parent is None:
            raise SlackError("thread_not_found")
        if parent.is_reply and parent.thread_ts is not None:
            parent_or_none = self._find_message(channel.id, parent.thread_ts)
            if parent_or_none is None:
                raise SlackError("thread_not_found")
            parent = parent_or_none
        replies = self._replies(channel.id, parent.ts)
        limit = self._limit(ctx.params)
        thread = [parent, *replies][:limit]
        return {
            "messages": [
                m.to_api(
                    include_metadata=include_metadata,
                    replies=replies if m is parent else None,
                )
                for m in thread
            ],
            "has_more": len(replies) + 1 > limit,
        }

    @staticmethod
    def _limit(params: JSONDict) -> int:
        raw = params.get("limit")
        if raw is None or raw == "":
            return HISTORY_DEFAULT_LIMIT
        try:
            value = int(raw)
        except (TypeError, ValueError) as exc:
            raise SlackError("invalid_arguments") from exc
        return HISTORY_DEFAULT_LIMIT if value <= 0 else min(value, HISTORY_MAX_LIMIT)

    def _users_info(self, ctx: _Ctx) -> JSONDict:
        user_id = _opt_str(ctx.params.get("user"))
        if user_id is None:
            raise SlackError("user_not_found")
        return {"user": self._user(ctx.ws, user_id).to_api()}

    def _oauth_v2_access(self, ctx: _Ctx) -> JSONDict:
        # Slack prefers the client credentials as HTTP Basic auth; form fields also work.
        if ctx.basic_auth is not None:
            client_id, client_secret = ctx.basic_auth
        else:
            client_id = _opt_str(ctx.params.get("client_id")) or ""
            client_secret = _opt_str(ctx.params.get("client_secret")) or ""
        if client_id != self.client_id:
            raise SlackError("invalid_client_id")
        if client_secret != self.client_secret:
            raise SlackError("bad_client_secret")
        if _opt_str(ctx.params.get("grant_type")) == "refresh_token":
            raise SlackError("invalid_refresh_token")
        code = _opt_str(ctx.params.get("code"))
        install = self._installs.get(code) if code is not None else None
        if install is None or code is None:
            raise SlackError("invalid_code")
        redirect_uri = _opt_str(ctx.params.get("redirect_uri"))
        if install.redirect_uri is not None and redirect_uri != install.redirect_uri:
            raise SlackError("bad_redirect_uri")
        # A code is good for one exchange only.
        del self._installs[code]
        self.add_workspace(
            install.team_id,
            install.bot_token,
            install.bot_user_id,
            install.team_name,
            scope=install.scope,
        )
        authed_user: JSONDict = {"id": install.installer_user_id}
        if install.user_scope is not None:
            authed_user.update(
                scope=install.user_scope,
                access_token=f"xoxp-{install.team_id.lower()}-{next(self._serial)}",
                token_type="user",
            )
        return {
            "access_token": install.bot_token,
            "token_type": "bot",
            "scope": install.scope,
            "bot_user_id": install.bot_user_id,
            "app_id": self.app_id,
            "team": {"name": install.team_name, "id": install.team_id},
            "enterprise": None,
            "is_enterprise_install": False,
            "authed_user": authed_user,
        }
