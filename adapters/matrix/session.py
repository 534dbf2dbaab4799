"""The bot's Matrix login: one device that outlives restarts, with its encryption keys.

The device id is kept in the database (``bot_state``), so every start logs in as the same
device: the homeserver then deduplicates a resend by transaction id, and people's clients
keep trusting one set of keys. The keys themselves live in nio's store under
``<data dir>/matrix-store`` (readable by the bot's user only); losing that directory means
a new identity that people have to trust again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import ClientError
from nio import AsyncClient, AsyncClientConfig, ErrorResponse, LoginResponse, WhoamiResponse

from adapters.matrix.key_store import KeyStore
from storage.bot_state_repo import get_state, put_state
from storage.db import Database

log = logging.getLogger(__name__)

DEVICE_NAME = "fusionbot"
# Long-polling syncs wait up to 30 s on the server; requests get that and a margin.
REQUEST_TIMEOUT = 60.0
LOGIN_ATTEMPTS = 8


class MatrixLoginError(RuntimeError):
    """The homeserver refused the bot's credentials: a person must fix the settings."""


@dataclass(frozen=True)
class MatrixAccount:
    homeserver: str
    user_id: str
    password: str | None = None
    access_token: str | None = None
    device_id: str | None = None


def state_key(user_id: str, name: str) -> str:
    return f"matrix:{user_id}:{name}"


def client_config() -> AsyncClientConfig:
    # Rate limits reach the outbox (which paces rooms) instead of nio sleeping inside a
    # send; sync tokens are kept in our database, not nio's store; nio's store without
    # its no-op write per sync (adapters/matrix/key_store.py).
    return AsyncClientConfig(
        encryption_enabled=True,
        store=KeyStore,
        store_sync_tokens=False,
        max_limit_exceeded=0,
        max_timeouts=2,
        request_timeout=REQUEST_TIMEOUT,
    )


async def open_session(account: MatrixAccount, db: Database, data_dir: Path) -> AsyncClient:
    """A logged-in client on the bot's persistent device, its key store loaded."""
    async with db.read() as conn:
        stored_device = await get_state(conn, state_key(account.user_id, "device_id"))
    device_id = account.device_id or stored_device or ""
    store = data_dir / "matrix-store"
    store.mkdir(parents=True, exist_ok=True)
    store.chmod(0o700)
    client = AsyncClient(
        account.homeserver,
        account.user_id,
        device_id=device_id,
        store_path=str(store),
        config=client_config(),
    )
    try:
        if account.access_token:
            await _restore(client, account.access_token, device_id)
        elif account.password:
            await _login(client, account.password)
        else:
            raise MatrixLoginError("Matrix needs MATRIX_PASSWORD or MATRIX_ACCESS_TOKEN")
    except BaseException:
        await client.close()
        raise
    if client.device_id != stored_device:
        async with db.transaction() as conn:
            await put_state(conn, state_key(account.user_id, "device_id"), client.device_id)
    log.info("matrix: logged in as %s on device %s", client.user_id, client.device_id)
    return client


async def _login(client: AsyncClient, password: str) -> None:
    answer = await _patiently(lambda: client.login(password, device_name=DEVICE_NAME))
    if not isinstance(answer, LoginResponse):
        raise MatrixLoginError(f"Matrix login as {client.user} failed: {answer.message}")


async def _restore(client: AsyncClient, token: str, device_id: str) -> None:
    client.access_token = token
    client.user_id = client.user
    answer = await _patiently(client.whoami)
    if not isinstance(answer, WhoamiResponse):
        raise MatrixLoginError(f"MATRIX_ACCESS_TOKEN was refused: {answer.message}")
    if device_id and answer.device_id and answer.device_id != device_id:
        raise MatrixLoginError(
            f"MATRIX_ACCESS_TOKEN belongs to device {answer.device_id}, not {device_id}"
        )
    client.restore_login(answer.user_id, answer.device_id or device_id, token)


async def _patiently(call: Callable[[], Awaitable[Any]]) -> Any:
    """A homeserver that is starting or rate limiting gets a few tries; a refusal doesn't."""
    delay = 1.0
    for attempt in range(LOGIN_ATTEMPTS):
        try:
            answer = await call()
        except (ClientError, TimeoutError) as exc:
            if attempt == LOGIN_ATTEMPTS - 1:
                raise MatrixLoginError(f"the homeserver can't be reached: {exc}") from exc
            log.warning("matrix: homeserver not reachable (%s); trying again", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30)
            continue
        if isinstance(answer, ErrorResponse) and answer.status_code == "M_LIMIT_EXCEEDED":
            await asyncio.sleep((answer.retry_after_ms or 1000) / 1000)
            continue
        return answer
    return answer  # still rate limited after every try: the caller reports it


class DirectRooms:
    """Direct chats by person, mirrored in the account's ``m.direct`` data as Matrix
    clients keep it, so a restarted bot (or a person's client) finds the same room."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self.by_person: dict[str, str] = {}
        self._all: dict[str, list[str]] = {}

    @property
    def rooms(self) -> set[str]:
        return {room for rooms in self._all.values() for room in rooms}

    async def load(self) -> None:
        answer = await self._client.list_direct_rooms()
        rooms = getattr(answer, "rooms", None)
        if isinstance(rooms, dict):
            self._all = {person: list(ids) for person, ids in rooms.items()}
            # The newest room per person is the one to write to.
            self.by_person.update({p: ids[-1] for p, ids in self._all.items() if ids})

    async def remember(self, person: str, room_id: str) -> None:
        self.by_person[person] = room_id
        known = self._all.setdefault(person, [])
        if room_id in known:
            return
        known.append(room_id)
        client = self._client
        path = f"/_matrix/client/v3/user/{quote(client.user_id)}/account_data/m.direct"
        try:
            response = await client.send(
                "PUT",
                path,
                json.dumps(self._all),
                headers={"Authorization": f"Bearer {client.access_token}"},
            )
            response.release()
        except (ClientError, TimeoutError) as exc:
            # Only a convenience for restarts and clients: the room works without it.
            log.warning("matrix: could not record direct room %s: %s", room_id, exc)
