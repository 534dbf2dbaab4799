"""Loading and saving alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.alerts import Alert, AlertState, Timing, alert_ref, plan_from_json, plan_to_json
from bot.dissemination import Plan
from bot.tlp import TLP
from storage.tables import alerts
from storage.tips_repo import ConcurrentChange


def _alert(r: Any) -> Alert:
    return Alert(
        id=r.id,
        tip_id=r.tip_id,
        title=r.title,
        body=r.body,
        tlp=TLP(r.tlp),
        caveats=list(r.caveats),
        category=r.category,
        region=r.region,
        audience=None if r.audience is None else list(r.audience),
        timing=r.timing,
        send_at=r.send_at,
        state=AlertState(r.state),
        created_by=r.created_by,
        created_at=r.created_at,
        released_by=r.released_by,
        released_at=r.released_at,
        plan=None if r.plan is None else plan_from_json(r.plan),
        version=r.version,
    )


async def insert_alert(
    conn: AsyncConnection,
    *,
    tip_id: int,
    title: str,
    body: str,
    tlp: TLP,
    caveats: list[str],
    category: str,
    region: str | None,
    audience: list[str] | None,
    timing: Timing,
    send_at: datetime | None,
    created_by: str,
    now: datetime,
) -> Alert:
    """A new alert, as a draft: releasing it is a separate, audited step."""
    result = await conn.execute(
        alerts.insert()
        .values(
            tip_id=tip_id,
            title=title,
            body=body,
            tlp=tlp.value,
            caveats=caveats,
            category=category,
            region=region,
            audience=audience,
            timing=timing,
            send_at=send_at,
            state=AlertState.DRAFT.value,
            created_by=created_by,
            created_at=now,
            updated_at=now,
            version=1,
        )
        .returning(*alerts.c)
    )
    return _alert(result.one())


async def mark_released(
    conn: AsyncConnection, alert: Alert, *, by: str, plan: Plan, now: datetime
) -> None:
    """Record the release and the plan it followed; the row must be unchanged since loaded."""
    result = await conn.execute(
        update(alerts)
        .where(alerts.c.id == alert.id, alerts.c.version == alert.version)
        .values(
            state=AlertState.RELEASED.value,
            released_by=by,
            released_at=now,
            plan=plan_to_json(plan),
            updated_at=now,
            version=alert.version + 1,
        )
    )
    if result.rowcount != 1:
        raise ConcurrentChange(alert_ref(alert.id))
    alert.state = AlertState.RELEASED
    alert.released_by = by
    alert.released_at = now
    alert.plan = plan
    alert.version += 1


async def get_alert(conn: AsyncConnection, alert_id: int) -> Alert | None:
    row = (await conn.execute(select(alerts).where(alerts.c.id == alert_id))).first()
    return None if row is None else _alert(row)
