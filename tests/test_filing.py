"""Filing a tip at the storage level: what the filing returns is what the database holds,
and a platform's redelivery finds the tip filed the first time."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.similarity import tip_terms
from bot.tips import TipDraft, Urgency
from storage import tips_repo
from storage.db import Database
from storage.tables import tip_terms as tip_terms_table

# Given in another zone than UTC: the database gives times back in UTC.
FILED = datetime(2026, 11, 25, 7, 30, 15, 123456, tzinfo=ZoneInfo("America/New_York"))


def draft(summary: str = "Man photographing the substation fence with a tripod") -> TipDraft:
    return TipDraft(
        summary=summary,
        category="PHOTO",
        urgency=Urgency.PRIORITY,
        location="Pier 4",
        region="north",
        when="this morning",
        details="Grey van, left towards the gate",
    )


async def test_a_filed_tip_is_what_the_database_holds(db: Database) -> None:
    async with db.transaction() as conn:
        plain, created = await tips_repo.insert_tip(
            conn, draft(), officer="console:olly", channel="console:#tips", now=FILED
        )
        keyed, keyed_created = await tips_repo.insert_tip(
            conn,
            draft("Drone over the pier"),
            officer="slack:UOLLY",
            channel="slack:C0TIPS",
            now=FILED,
            source_key="slack:T1:trigger-1",
        )
    assert created and keyed_created
    assert plain.filed_at.tzinfo == UTC and plain.filed_at == FILED
    async with db.read() as conn:
        assert await tips_repo.get_tip(conn, plain.id) == plain
        assert await tips_repo.get_tip(conn, keyed.id) == keyed
        indexed = set(
            await conn.scalars(
                select(tip_terms_table.c.term).where(tip_terms_table.c.tip_id == plain.id)
            )
        )
    assert indexed == set(tip_terms(plain.summary, plain.details, plain.location))


async def test_a_redelivered_tip_is_the_one_filed_first(db: Database) -> None:
    async with db.transaction() as conn:
        first, _ = await tips_repo.insert_tip(
            conn,
            draft(),
            officer="slack:UOLLY",
            channel="slack:C0TIPS",
            now=FILED,
            source_key="slack:T1:trigger-2",
        )
    async with db.transaction() as conn:
        again, created = await tips_repo.insert_tip(
            conn,
            draft("Something else entirely"),
            officer="slack:UOLLY",
            channel="slack:C0TIPS",
            now=datetime(2026, 11, 25, 13, 0, tzinfo=UTC),
            source_key="slack:T1:trigger-2",
        )
    assert not created
    assert again == first
