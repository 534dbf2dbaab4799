"""What a person would call 'the state of things': tips, notes and the audit log."""

from __future__ import annotations

from sqlalchemy import select

from storage.db import Database
from storage.tables import audit_log, outbox, tip_notes, tips


async def state_of(db: Database) -> dict[str, object]:
    async with db.read() as conn:
        tip_rows = (await conn.execute(select(tips).order_by(tips.c.id))).all()
        notes = (await conn.execute(select(tip_notes).order_by(tip_notes.c.id))).all()
        audit = (await conn.execute(select(audit_log.c.id))).all()
    return {
        "tips": [tuple(r) for r in tip_rows],
        "notes": [tuple(r) for r in notes],
        "audit": len(audit),
    }


async def outbox_targets(db: Database) -> list[tuple[str, str | None, str]]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(outbox.c.target, outbox.c.ephemeral_to, outbox.c.op).order_by(outbox.c.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]
