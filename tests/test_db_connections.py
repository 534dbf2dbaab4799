"""Pooled connections: PostgreSQL ends the connections the bot keeps pooled (a server
restart, a failover, a DBA's pg_terminate_backend) while the bot is idle, and the next
commands must be served as if nothing happened, not answered with an error (the pool
replaces connections the server closed when they are checked out, without a round trip to
ask); a connection that ran a single statement in autocommit (Database.one_statement)
goes back to the pool as a transactional one."""

from __future__ import annotations

import asyncio
import re

import pytest
from sqlalchemy import func, select

from adapters.console.adapter import parse_line
from storage.db import Database
from storage.tables import bot_state, tips
from tests.conftest import reset_postgres
from tests.harness import ConsoleHarness, lines_for
from tests.test_faults import terminate_bot_connections


async def test_commands_after_the_server_ended_every_pooled_connection(
    private_postgres_url: str,
) -> None:
    url = private_postgres_url
    await reset_postgres(url)
    db = Database(url)
    await db.upgrade()
    h = ConsoleHarness(db)
    try:
        # Several connections in the pool: tips filed side by side.
        await asyncio.gather(
            *(
                h.bot.handle(
                    parse_line(f"@off{n} #tips !tip Van at the depot {n} | category: survl")[0]
                )
                for n in range(4)
            )
        )
        await h.bot.drain(10.0)
        assert await terminate_bot_connections(url) >= 1
        await asyncio.sleep(0.3)  # the server's goodbye reaches the idle connections

        for n in range(3):
            out = "\n".join(
                await h.say(f"@olly #tips !tip After the restart {n} | category: survl")
            )
            assert re.search(r"Received T-\d+", out), out
        assert len(lines_for(h.printed, "#review")) == 4 + 3  # every card posted
        async with db.read() as conn:
            assert await conn.scalar(select(func.count()).select_from(tips)) == 7
    finally:
        await db.dispose()


class Boom(Exception):
    pass


async def test_a_transaction_after_one_statement_writes_is_still_all_or_nothing(
    db: Database,
) -> None:
    for n in range(3):
        async with db.one_statement() as conn:
            await conn.execute(bot_state.insert().values(key=f"single {n}", value="x"))
    with pytest.raises(Boom):
        async with db.transaction() as conn:  # the same pooled connection, used again
            await conn.execute(bot_state.insert().values(key="first of two", value="x"))
            raise Boom
    async with db.read() as conn:
        keys = set(await conn.scalars(select(bot_state.c.key)))
    assert keys == {"single 0", "single 1", "single 2"}
