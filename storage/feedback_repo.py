"""Partners' feedback on alerts: one row per answer, kept as given."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.tables import alert_feedback


@dataclass(frozen=True)
class Feedback:
    alert_id: int
    actor: str
    channel: str
    partner_id: str | None
    useful: bool
    comment: str | None
    at: datetime


async def add_feedback(conn: AsyncConnection, feedback: Feedback) -> None:
    await conn.execute(
        alert_feedback.insert().values(
            alert_id=feedback.alert_id,
            actor=feedback.actor,
            channel=feedback.channel,
            partner_id=feedback.partner_id,
            useful=feedback.useful,
            comment=feedback.comment,
            at=feedback.at,
        )
    )


async def feedback_for(conn: AsyncConnection, alert_id: int) -> list[Feedback]:
    """Oldest first."""
    rows = await conn.execute(
        select(alert_feedback)
        .where(alert_feedback.c.alert_id == alert_id)
        .order_by(alert_feedback.c.id)
    )
    return [
        Feedback(
            alert_id=r.alert_id,
            actor=r.actor,
            channel=r.channel,
            partner_id=r.partner_id,
            useful=bool(r.useful),
            comment=r.comment,
            at=r.at,
        )
        for r in rows
    ]
