"""Platform events already handled, so a redelivered event acts only once: Slack's Events
API retries (event ids) and Matrix events seen again after a crash between handling them
and saving the sync token (``matrix:`` + event id)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import handled_events


async def first_time(conn: AsyncConnection, event_id: str, *, now: datetime) -> bool:
    """Record ``event_id``; False when it was recorded before (a redelivery)."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    result = await conn.execute(
        insert(handled_events)
        .values(event_id=event_id, received_at=now)
        .on_conflict_do_nothing(index_elements=[handled_events.c.event_id])
    )
    return result.rowcount == 1


async def was_handled(conn: AsyncConnection, event_id: str) -> bool:
    found = await conn.execute(
        select(handled_events.c.event_id).where(handled_events.c.event_id == event_id)
    )
    return found.first() is not None


async def forget_before(conn: AsyncConnection, cutoff: datetime) -> int:
    """Redeliveries come within minutes; ids older than that need not be kept."""
    result = await conn.execute(delete(handled_events).where(handled_events.c.received_at < cutoff))
    return int(result.rowcount or 0)
