"""Queries for alerts confirmed with at: and for reading several alerts at once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.alerts import Alert, AlertState, plan_to_json
from bot.dissemination import Plan
from storage.alerts_repo import _alert as row_to_alert
from storage.tables import alerts


async def mark_scheduled(conn: AsyncConnection, alert: Alert, *, plan: Plan, now: datetime) -> None:
    """Confirmed with at:: the plan is kept for the record; it is made again at send time."""
    await conn.execute(
        update(alerts)
        .where(alerts.c.id == alert.id)
        .values(state=AlertState.SCHEDULED.value, plan=plan_to_json(plan), updated_at=now)
    )
    alert.state = AlertState.SCHEDULED
    alert.plan = plan


async def scheduled_due(conn: AsyncConnection, now: datetime) -> list[Alert]:
    """Scheduled alerts whose time has come, locked so that one process sends each."""
    query = (
        select(alerts)
        .where(alerts.c.state == AlertState.SCHEDULED.value, alerts.c.send_at <= now)
        .order_by(alerts.c.send_at, alerts.c.id)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [row_to_alert(r) for r in await conn.execute(query)]


async def get_alerts(conn: AsyncConnection, ids: list[int]) -> dict[int, Alert]:
    if not ids:
        return {}
    rows = await conn.execute(select(alerts).where(alerts.c.id.in_(ids)))
    return {r.id: row_to_alert(r) for r in rows}
