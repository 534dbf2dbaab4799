"""Loading and saving tips and their notes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.similarity import TipText
from bot.tips import Tip, TipDraft, TipNote, TipState, Urgency
from storage.tables import tip_notes, tips


def _tip(r: Any) -> Tip:
    return Tip(
        id=r.id,
        summary=r.summary,
        category=r.category,
        urgency=Urgency(r.urgency),
        officer=r.officer,
        intake_channel=r.intake_channel,
        filed_at=r.filed_at,
        state=TipState(r.state),
        location=r.location,
        region=r.region,
        when=r.when_text,
        details=r.details,
        claimed_by=r.claimed_by,
        decided_by=r.decided_by,
        decided_at=r.decided_at,
        reason=r.reason,
        duplicate_of=r.duplicate_of,
        purged_at=r.purged_at,
        sla_reminded_at=r.sla_reminded_at,
        reviewed_at=r.reviewed_at,
        version=r.version,
    )


async def insert_tip(
    conn: AsyncConnection,
    draft: TipDraft,
    *,
    officer: str,
    channel: str,
    now: datetime,
    source_key: str | None = None,
) -> tuple[Tip, bool]:
    """File a tip. With a ``source_key`` already seen (a platform's redelivery), returns
    the tip filed the first time and False."""
    values = {
        "summary": draft.summary,
        "category": draft.category,
        "urgency": draft.urgency.value,
        "location": draft.location,
        "region": draft.region,
        "when_text": draft.when,
        "details": draft.details,
        "state": TipState.NEW.value,
        "officer": officer,
        "intake_channel": channel,
        "filed_at": now,
        "updated_at": now,
        "version": 1,
        "source_key": source_key,
    }
    if source_key is None:
        result = await conn.execute(tips.insert().values(**values).returning(*tips.c))
        return _tip(result.one()), True
    # One statement for a new tip: insert unless the key is taken (a redelivery, or on
    # PostgreSQL a concurrent one, whose commit this waits for), then look that one up.
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    inserted = (
        await conn.execute(
            insert(tips)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[tips.c.source_key])
            .returning(*tips.c)
        )
    ).first()
    if inserted is not None:
        return _tip(inserted), True
    existing = (await conn.execute(select(tips).where(tips.c.source_key == source_key))).one()
    return _tip(existing), False


async def get_tip(conn: AsyncConnection, tip_id: int, *, for_update: bool = False) -> Tip | None:
    query = select(tips).where(tips.c.id == tip_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else _tip(row)


async def save_tip(conn: AsyncConnection, tip: Tip, *, now: datetime) -> None:
    """Write a changed tip; the row must still be at the version it was loaded at."""
    result = await conn.execute(
        update(tips)
        .where(tips.c.id == tip.id, tips.c.version == tip.version)
        .values(
            state=tip.state.value,
            claimed_by=tip.claimed_by,
            decided_by=tip.decided_by,
            decided_at=tip.decided_at,
            reason=tip.reason,
            duplicate_of=tip.duplicate_of,
            summary=tip.summary,
            location=tip.location,
            when_text=tip.when,
            details=tip.details,
            purged_at=tip.purged_at,
            updated_at=now,
            version=tip.version + 1,
        )
    )
    if result.rowcount != 1:
        raise ConcurrentChange(tip.ref)
    tip.version += 1


class ConcurrentChange(Exception):
    """Someone else changed the tip between loading and saving it."""


async def add_note(conn: AsyncConnection, note: TipNote) -> None:
    await conn.execute(
        tip_notes.insert().values(
            tip_id=note.tip_id, kind=note.kind, actor=note.actor, text=note.text, at=note.at
        )
    )


async def notes_for(conn: AsyncConnection, tip_id: int) -> list[TipNote]:
    rows = await conn.execute(
        select(tip_notes).where(tip_notes.c.tip_id == tip_id).order_by(tip_notes.c.id)
    )
    return [TipNote(r.tip_id, r.kind, r.actor, r.text, r.at) for r in rows]


async def open_tips(
    conn: AsyncConnection, *, exclude: int | None = None, limit: int = 500
) -> list[TipText]:
    """The most recent tips still being worked on (candidates for 'similar tips'): only
    the columns similarity reads, since every card render loads up to ``limit`` of them."""
    open_states = [TipState.NEW.value, TipState.CLAIMED.value, TipState.NEEDS_INFO.value]
    query = (
        select(tips.c.id, tips.c.summary, tips.c.details, tips.c.location)
        .where(tips.c.state.in_(open_states), tips.c.purged_at.is_(None))
        .order_by(tips.c.id.desc())
        .limit(limit)
    )
    if exclude is not None:
        query = query.where(tips.c.id != exclude)
    return list(map(TipText._make, (await conn.execute(query)).all()))


async def tips_by_officer(conn: AsyncConnection, officer: str, *, limit: int = 10) -> list[Tip]:
    rows = await conn.execute(
        select(tips).where(tips.c.officer == officer).order_by(tips.c.id.desc()).limit(limit)
    )
    return [_tip(r) for r in rows]


async def tips_in_queue(conn: AsyncConnection, *, limit: int = 20) -> list[Tip]:
    """Open tips, oldest first: the analysts' queue."""
    open_states = [TipState.NEW.value, TipState.CLAIMED.value, TipState.NEEDS_INFO.value]
    rows = await conn.execute(
        select(tips).where(tips.c.state.in_(open_states)).order_by(tips.c.id).limit(limit)
    )
    return [_tip(r) for r in rows]


# --- SLA reminders and retention (28 CFR Part 23) -----------------------------------------
# Each change below is a conditional UPDATE: of two processes running the same job, only one
# finds the row still matching, so the work happens once.


async def untriaged_past(
    conn: AsyncConnection, cutoffs: Mapping[Urgency, datetime], *, limit: int = 500
) -> list[Tip]:
    """New tips, not yet reminded about, filed at or before the cutoff for their urgency."""
    due = or_(
        *(
            and_(tips.c.urgency == urgency.value, tips.c.filed_at <= cutoff)
            for urgency, cutoff in cutoffs.items()
        )
    )
    rows = await conn.execute(
        select(tips)
        .where(
            tips.c.state == TipState.NEW.value,
            tips.c.purged_at.is_(None),
            tips.c.sla_reminded_at.is_(None),
            due,
        )
        .order_by(tips.c.id)
        .limit(limit)
    )
    return [_tip(r) for r in rows]


async def mark_sla_reminded(conn: AsyncConnection, tip_id: int, *, now: datetime) -> Tip | None:
    """Record the reminder; None if the tip was meanwhile triaged, purged or reminded about.

    The version is left alone: an analyst acting on the tip at the same moment must not be
    told it changed under them, and nothing they save touches this column."""
    row = (
        await conn.execute(
            update(tips)
            .where(
                tips.c.id == tip_id,
                tips.c.state == TipState.NEW.value,
                tips.c.purged_at.is_(None),
                tips.c.sla_reminded_at.is_(None),
            )
            .values(sla_reminded_at=now)
            .returning(*tips.c)
        )
    ).first()
    return None if row is None else _tip(row)


async def rejected_before(
    conn: AsyncConnection, cutoff: datetime, *, limit: int = 500
) -> list[Tip]:
    """Rejected tips decided at or before ``cutoff`` whose content is still held."""
    rows = await conn.execute(
        select(tips)
        .where(
            tips.c.state == TipState.REJECTED.value,
            tips.c.purged_at.is_(None),
            tips.c.decided_at <= cutoff,
        )
        .order_by(tips.c.id)
        .limit(limit)
    )
    return [_tip(r) for r in rows]


async def purge_tip(conn: AsyncConnection, tip_id: int, *, now: datetime) -> Tip | None:
    """Remove a rejected tip's content and its notes, keeping the bare record (id, category,
    urgency, people, dates). None if it is not a rejected tip still holding content."""
    row = (
        await conn.execute(
            update(tips)
            .where(
                tips.c.id == tip_id,
                tips.c.state == TipState.REJECTED.value,
                tips.c.purged_at.is_(None),
            )
            .values(
                summary="",
                location=None,
                region=None,
                when_text=None,
                details=None,
                reason=None,
                purged_at=now,
                updated_at=now,
                # A writer holding the tip as loaded before must fail, not write content back.
                version=tips.c.version + 1,
            )
            .returning(*tips.c)
        )
    ).first()
    if row is None:
        return None
    await conn.execute(delete(tip_notes).where(tip_notes.c.tip_id == tip_id))
    return _tip(row)


def _review_period_start() -> ColumnElement[datetime]:
    return func.coalesce(tips.c.reviewed_at, tips.c.filed_at)


async def due_for_review(conn: AsyncConnection, cutoff: datetime, *, limit: int = 500) -> list[Tip]:
    """Records still held whose period (last validation, else filing) began at or before
    ``cutoff``; longest overdue first."""
    start = _review_period_start()
    rows = await conn.execute(
        select(tips)
        .where(tips.c.purged_at.is_(None), start <= cutoff)
        .order_by(start, tips.c.id)
        .limit(limit)
    )
    return [_tip(r) for r in rows]


async def mark_reviewed(conn: AsyncConnection, tip_id: int, *, now: datetime) -> Tip | None:
    """Start a new retention period; None if there is no such record or it was purged."""
    row = (
        await conn.execute(
            update(tips)
            .where(tips.c.id == tip_id, tips.c.purged_at.is_(None))
            .values(reviewed_at=now)
            .returning(*tips.c)
        )
    ).first()
    return None if row is None else _tip(row)
