"""A PostgreSQL connection lost during a commit: the bot must not claim "nothing was
changed" when the commit happened, nor say a tip was received when it wasn't.

Between the bot and the real PostgreSQL server sits a TCP relay that can cut the
connection around the next COMMIT: after the server has it (the commit is applied, the
answer never arrives) or before (the server never sees it and rolls back)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from adapters.console.sender import ConsoleSender
from bot.app import FusionBot, build
from bot.settings import Settings
from commands.context import Command
from storage.db import Database
from storage.tables import tips
from tests.conftest import reset_postgres
from tests.policies import console_policy

OFFICER, ANALYST = "console:officer", "console:ana"


class CommitCutter:
    """Relays 127.0.0.1:<port> to the PostgreSQL server; ``arm`` makes it cut the next
    connection that runs a given statement, when it commits: after or before passing the
    COMMIT on. (The outbox worker commits on other connections meanwhile: untouched.)
    A statement run in autocommit (``autocommit=True``) commits as it executes: the cut
    comes with its execution (the message after the one that prepared it)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.armed: str | None = None  # "after" or "before"
        self.statement = b""
        self.autocommit = False
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()

    def arm(self, when: str, statement: bytes, *, autocommit: bool = False) -> None:
        self.armed, self.statement, self.autocommit = when, statement, autocommit

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(self.host, self.port)
        self._writers.update((client_w, server_w))

        def cut() -> None:
            self.cuts += 1
            self.armed = None
            for writer in (client_w, server_w):
                writer.transport.abort()

        deaf = False  # the server's answers no longer reach the client

        async def upstream() -> None:
            nonlocal deaf
            targeted = False
            while data := await client_r.read(65536):
                prepared_here = False
                if self.armed and self.statement in data:
                    targeted = prepared_here = True
                commits = b"COMMIT" in data.upper() or (self.autocommit and not prepared_here)
                if targeted and self.armed and commits:
                    if self.armed == "before":
                        cut()
                        return
                    deaf = True
                    server_w.write(data)
                    await server_w.drain()
                    await asyncio.sleep(0.3)  # the server commits; its answer is lost
                    cut()
                    return
                server_w.write(data)
                await server_w.drain()

        async def downstream() -> None:
            while data := await server_r.read(65536):
                if deaf:
                    continue
                client_w.write(data)
                await client_w.drain()

        # When either side ends, so does the other (as a real connection would).
        directions = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        with contextlib.suppress(Exception):
            await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        for direction in directions:
            direction.cancel()
        for writer in (client_w, server_w):
            writer.transport.abort()
            self._writers.discard(writer)


@pytest.fixture
async def relayed(
    private_postgres_url: str,
) -> AsyncIterator[tuple[FusionBot, CommitCutter, list[str]]]:
    await reset_postgres(private_postgres_url)
    real = make_url(private_postgres_url)
    cutter = CommitCutter(real.host or "127.0.0.1", real.port or 5432)
    port = await cutter.start()
    url = real.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    printed: list[str] = []
    db = Database(url)
    await db.upgrade()
    bot = build(
        Settings.from_environ({}),
        policy=console_policy(),
        senders={"console": ConsoleSender(printed.append)},
        database=db,
    )
    try:
        yield bot, cutter, printed
    finally:
        await bot.stop()
        cutter.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(db.dispose(), 10)


async def tips_stored(bot: FusionBot) -> list[str]:
    async with bot.core.db.read() as conn:
        return list((await conn.execute(select(tips.c.summary).order_by(tips.c.id))).scalars())


async def answers_after(bot: FusionBot, printed: list[str], command: Command) -> list[str]:
    before = len(printed)
    await bot.handle(command)
    await bot.drain(10.0)
    return printed[before:]


def tip(text: str, key: str) -> Command:
    return Command(OFFICER, "console:#tips", f"!tip {text} | category: photo", source_key=key)


async def test_a_tip_whose_commit_was_applied_is_received_once(
    relayed: tuple[FusionBot, CommitCutter, list[str]],
) -> None:
    bot, cutter, printed = relayed
    cutter.arm("after", b"INSERT INTO tips")
    answers = await answers_after(bot, printed, tip("Drone over the stadium", "slack:req-1"))
    assert cutter.cuts == 1
    assert await tips_stored(bot) == ["Drone over the stadium"]
    to_officer = [a for a in answers if "Received T-1" in a or "nothing was changed" in a]
    assert len(to_officer) == 1 and "Received T-1" in to_officer[0], answers


async def test_a_tip_whose_commit_never_arrived_is_refused_politely(
    relayed: tuple[FusionBot, CommitCutter, list[str]],
) -> None:
    bot, cutter, printed = relayed
    cutter.arm("before", b"INSERT INTO tips")
    answers = await answers_after(bot, printed, tip("Drone over the stadium", "slack:req-2"))
    assert cutter.cuts == 1
    assert await tips_stored(bot) == []
    assert any("nothing was changed" in a for a in answers), answers
    assert not any("Received" in a for a in answers), answers


async def test_a_command_whose_commit_was_cut_is_not_called_unchanged(
    relayed: tuple[FusionBot, CommitCutter, list[str]],
) -> None:
    bot, cutter, printed = relayed
    await answers_after(bot, printed, tip("Drone over the stadium", "slack:req-3"))
    cutter.arm("after", b"UPDATE tips")
    answers = await answers_after(bot, printed, Command(ANALYST, "console:#review", "!claim T-1"))
    assert cutter.cuts == 1
    assert any("can't tell whether it was saved" in a for a in answers), answers
    assert not any("nothing was changed" in a for a in answers), answers
