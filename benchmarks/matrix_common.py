"""What the Matrix benchmarks share: a real Synapse on 127.0.0.1 (the test suite's
harness: SQLite, relaxed rate limits, no federation), the bot itself in this process, and,
for the processes of their own that the people and the bare baselines run in
(`benchmarks.matrix_people`), accounts, logged-in nio clients and a watcher that notes when
each of the bot's messages arrives."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nio import AsyncClient, LoginResponse, RoomMessageNotice, SyncResponse

from bot.app import FusionBot, build, start_matrix
from bot.policy_loader import parse_policy
from bot.settings import Settings
from storage.db import Database
from tests.matrix_server.fixtures import CLIENT_CONFIG
from tests.matrix_server.people import Person
from tests.matrix_server.synapse import SynapseServer


@contextlib.contextmanager
def synapse_server() -> SynapseServer:  # type: ignore[misc]
    server = SynapseServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@dataclass
class Watcher:
    """A member of the rooms who notes when each notice from ``sender`` (or from any of
    ``also``) arrives, and its content as sent."""

    client: AsyncClient
    sender: str
    arrivals: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    contents: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    also: tuple[str, ...] = ()
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        first = await self.client.sync(timeout=0, full_state=True)
        assert isinstance(first, SyncResponse), first
        senders = {self.sender, *self.also}

        async def noted(room: object, event: RoomMessageNotice) -> None:
            if event.sender in senders and "m.new_content" not in event.source.get("content", {}):
                room_id = getattr(room, "room_id", "")
                self.arrivals.setdefault(room_id, []).append((time.monotonic(), event.body))
                self.contents.setdefault(room_id, []).append(event.source.get("content", {}))

        self.client.add_event_callback(noted, RoomMessageNotice)  # type: ignore[arg-type]
        self._task = asyncio.create_task(self.client.sync_forever(timeout=1000))

    def count(self, rooms: list[str]) -> int:
        return sum(1 for r in rooms if self.arrivals.get(r))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def register_bot(server: SynapseServer) -> tuple[str, str]:
    password = secrets.token_urlsafe(12)
    user = await asyncio.to_thread(server.register, f"fusionbot-{secrets.token_hex(3)}", password)
    return user.user_id, password


async def account(server: SynapseServer, name: str) -> dict[str, str]:
    """A fresh user (``name`` plus a random suffix), for another process to log in as."""
    password = secrets.token_urlsafe(12)
    user = await asyncio.to_thread(server.register, f"{name}-{secrets.token_hex(4)}", password)
    return {"user_id": user.user_id, "password": password, "name": name}


async def login(url: str, who: dict[str, str], stores: Path) -> AsyncClient:
    """A nio client logged in (a new device) as an ``account()``; the caller closes it."""
    store = stores / who["user_id"].strip("@").replace(":", "_")
    store.mkdir(parents=True)
    client = AsyncClient(url, who["user_id"], store_path=str(store), config=CLIENT_CONFIG)
    answer = await client.login(who["password"], device_name=f"benchmark ({who['name']})")
    if not isinstance(answer, LoginResponse):
        await client.close()
        raise RuntimeError(f"login as {who['user_id']} failed: {answer}")
    return client


async def person(url: str, who: dict[str, str], stores: Path) -> Person:
    somebody = Person(await login(url, who, stores))
    await somebody.sync()
    return somebody


@contextlib.asynccontextmanager
async def running_bot(
    server: SynapseServer, bot_user: str, password: str, policy_text: str, tmp: Path
) -> AsyncIterator[FusionBot]:
    settings = Settings.from_environ(
        {
            "MATRIX_HOMESERVER": server.url,
            "MATRIX_USER_ID": bot_user,
            "MATRIX_PASSWORD": password,
            "FUSIONBOT_DATA_DIR": str(tmp / "data"),
        }
    )
    bot = build(
        settings,
        policy=parse_policy(policy_text, "bench-policy.toml"),
        database=Database(f"sqlite+aiosqlite:///{tmp / 'bench.db'}"),
    )
    await bot.start()
    runtime = await start_matrix(bot)
    try:
        await runtime.wait_ready(120)
        yield bot
    finally:
        await runtime.stop()
        await bot.stop()
        await runtime.close()


async def until(check: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)
