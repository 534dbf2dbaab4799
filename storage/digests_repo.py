"""Alert copies waiting for a partner's digest, and the digests that took them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import digest_items


@dataclass(frozen=True)
class DigestItem:
    id: int
    alert_id: int
    partner_id: str
    target: str
    queued_at: datetime
    digest_key: str | None


async def queue_item(
    conn: AsyncConnection, *, alert_id: int, partner_id: str, target: str, now: datetime
) -> None:
    """Queue a copy for the partner's next digest; queuing the same copy twice is a no-op."""
    exists = await conn.scalar(
        select(digest_items.c.id).where(
            digest_items.c.alert_id == alert_id, digest_items.c.target == target
        )
    )
    if exists is None:
        await conn.execute(
            digest_items.insert().values(
                alert_id=alert_id, partner_id=partner_id, target=target, queued_at=now
            )
        )


async def waiting(conn: AsyncConnection, *, lock: bool = False) -> list[DigestItem]:
    """Items no digest has taken yet, oldest first. ``lock`` keeps a second scheduler
    (another replica) from taking the same items while this transaction runs."""
    query = (
        select(digest_items).where(digest_items.c.digest_key.is_(None)).order_by(digest_items.c.id)
    )
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [DigestItem(**r._mapping) for r in await conn.execute(query)]


async def take(conn: AsyncConnection, ids: list[int], digest_key: str) -> None:
    if ids:
        await conn.execute(
            update(digest_items)
            .where(digest_items.c.id.in_(ids), digest_items.c.digest_key.is_(None))
            .values(digest_key=digest_key)
        )


async def items_for_alert(conn: AsyncConnection, alert_id: int) -> list[DigestItem]:
    rows = await conn.execute(
        select(digest_items).where(digest_items.c.alert_id == alert_id).order_by(digest_items.c.id)
    )
    return [DigestItem(**r._mapping) for r in rows]


async def items_in_digest(conn: AsyncConnection, digest_key: str) -> list[DigestItem]:
    rows = await conn.execute(
        select(digest_items)
        .where(digest_items.c.digest_key == digest_key)
        .order_by(digest_items.c.id)
    )
    return [DigestItem(**r._mapping) for r in rows]
