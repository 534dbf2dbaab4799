"""Slack Events API deliveries already handled, so a retried delivery acts only once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import slack_events


async def first_time(conn: AsyncConnection, event_id: str, *, now: datetime) -> bool:
    """Record ``event_id``; False when it was recorded before (Slack's retry)."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    result = await conn.execute(
        insert(slack_events)
        .values(event_id=event_id, received_at=now)
        .on_conflict_do_nothing(index_elements=[slack_events.c.event_id])
    )
    return result.rowcount == 1


async def forget_before(conn: AsyncConnection, cutoff: datetime) -> int:
    """Slack retries within minutes; ids older than that need not be kept."""
    result = await conn.execute(delete(slack_events).where(slack_events.c.received_at < cutoff))
    return int(result.rowcount or 0)
