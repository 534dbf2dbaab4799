"""The embedded database keeps its plans for the statements run on every card, claim and
!status whether SQLite has statistics or not: a center's history (thousands of sent outbox
rows, closed tips) must not turn them into scans of whole tables.

SQLite's planner is the one that needs this: with statistics gathered while nearly every
outbox row is sent it scanned the outbox for each claim of the delivery worker (30-40 ms at
200,000 rows); without statistics it sorted every open tip to find the few it needed."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from bot.similarity import place_term, word_terms
from storage import outbox_repo, tips_repo
from storage.db import Database
from storage.tables import outbox, tips

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TIPS = 3000


async def history(path: Path) -> Database:
    """A database with a history: most tips closed, every message sent."""
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.upgrade()
    async with db.transaction() as conn:
        await conn.execute(
            tips.insert(),
            [
                {
                    "id": n,
                    "summary": f"Van photographing the substation fence {n}",
                    "category": "PHOTO",
                    "urgency": "routine",
                    "state": "new" if n % 20 == 0 else "approved",
                    "officer": f"console:off{n % 50}",
                    "intake_channel": "console:#tips",
                    "filed_at": NOW,
                    "updated_at": NOW,
                    "version": 1,
                }
                for n in range(1, TIPS + 1)
            ],
        )
        await conn.execute(
            outbox.insert(),
            [
                {
                    "key": f"card:{n}@console:#review",
                    "op": "post",
                    "target": "console:#review",
                    "message_key": f"card:{n}",
                    "payload": {"text": "sent"},
                    "state": "sent",
                    "attempts": 0,
                    "next_attempt_at": NOW,
                    "created_at": NOW,
                    "sent_at": NOW,
                    "platform_ref": f"console-{n}",
                }
                for n in range(1, 2 * TIPS + 1)
            ],
        )
    return db


async def plans_of_hot_statements(db: Database, path: Path) -> dict[str, str]:
    """EXPLAIN QUERY PLAN of what a claim, the outbox depth, a card's similar tips and
    the analysts' queue run, as they run it."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    ran: dict[str, tuple[str, Any]] = {}
    async with db.read() as conn:
        for name, call in (
            ("take over leases", lambda: _claim(conn, reclaim=True)),
            ("claim new rows", lambda: _claim(conn, reclaim=False)),
            ("outbox depth", lambda: outbox_repo.waiting_by_platform(conn)),
            ("similar tips", lambda: _similar(conn)),
            ("queue", lambda: tips_repo.tips_in_queue(conn)),
            ("open tips counted", lambda: tips_repo.open_tip_count(conn)),
        ):
            seen.clear()
            await call()
            ran[name] = seen[0]
    event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    explain = sqlite3.connect(path)
    try:
        return {
            name: " | ".join(row[3] for row in explain.execute(f"EXPLAIN QUERY PLAN {sql}", p))
            for name, (sql, p) in ran.items()
        }
    finally:
        explain.close()


async def _claim(conn: Any, *, reclaim: bool) -> Any:
    return await outbox_repo.claim_due(
        conn, now=NOW, lease=timedelta(seconds=30), platforms=["console"], reclaim=reclaim
    )


async def _similar(conn: Any) -> Any:
    words = word_terms("Person photographing the substation fence with a tripod", None)
    return await tips_repo.similar_open_tips(conn, words, place_term("gate 7"), exclude=0)


@pytest.mark.parametrize("statistics", [False, True], ids=["no statistics", "statistics"])
async def test_hot_statements_use_their_indexes_with_or_without_statistics(
    tmp_path: Path, statistics: bool
) -> None:
    path = tmp_path / "history.db"
    db = await history(path)
    try:
        if statistics:
            async with db.transaction() as conn:
                await conn.exec_driver_sql("ANALYZE")
        plans = await plans_of_hot_statements(db, path)
    finally:
        await db.dispose()
    for name in ("take over leases", "claim new rows", "outbox depth"):
        assert "ix_outbox_due" in plans[name] and "SCAN outbox" not in plans[name], plans
    assert "ix_tips_open" in plans["similar tips"], plans
    assert "ix_tips_queue" in plans["queue"] and "TEMP B-TREE" not in plans["queue"], plans
    for name in ("similar tips", "queue", "open tips counted"):
        assert "ix_tips_state" not in plans[name], plans
    assert "ix_tips_open" in plans["open tips counted"], plans
