"""Small named values kept between runs (the Matrix device id and sync token)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import bot_state


async def get_state(conn: AsyncConnection, key: str) -> str | None:
    return (await conn.execute(select(bot_state.c.value).where(bot_state.c.key == key))).scalar()


async def put_state(conn: AsyncConnection, key: str, value: str) -> None:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(bot_state).values(key=key, value=value)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[bot_state.c.key],
            set_={"value": statement.excluded.value},
        )
    )
