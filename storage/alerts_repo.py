"""Loading and saving alerts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.alerts import Alert, AlertState, Timing, alert_ref, plan_from_json, plan_to_json
from bot.dissemination import Plan
from bot.messages import Message
from bot.tlp import TLP
from storage.outbox_repo import HELD, PENDING, SUPERSEDED
from storage.tables import alerts, outbox
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
        updated_at=r.updated_at,
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


async def get_alert(
    conn: AsyncConnection, alert_id: int, *, for_update: bool = False
) -> Alert | None:
    query = select(alerts).where(alerts.c.id == alert_id)
    if for_update and conn.dialect.name == "postgresql":
        # Two analysts changing one alert at once: the second waits, then sees the first.
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else _alert(row)


@dataclass(frozen=True)
class Retraction:
    by: str
    at: datetime
    reason: str


async def save_body(conn: AsyncConnection, alert: Alert, body: str, *, now: datetime) -> None:
    """Replace the text of an alert; the row must be unchanged since loaded."""
    await _change(conn, alert, body=body, updated_at=now)
    alert.body = body
    alert.updated_at = now
    alert.version += 1


async def mark_retracted(
    conn: AsyncConnection, alert: Alert, *, by: str, reason: str, now: datetime
) -> None:
    await _change(
        conn,
        alert,
        state=AlertState.RETRACTED.value,
        retracted_by=by,
        retracted_at=now,
        retracted_reason=reason,
        updated_at=now,
    )
    alert.state = AlertState.RETRACTED
    alert.version += 1


async def get_retraction(conn: AsyncConnection, alert_id: int) -> Retraction | None:
    row = (
        await conn.execute(
            select(alerts.c.retracted_by, alerts.c.retracted_at, alerts.c.retracted_reason).where(
                alerts.c.id == alert_id
            )
        )
    ).first()
    if row is None or row.retracted_at is None:
        return None
    return Retraction(by=row.retracted_by, at=row.retracted_at, reason=row.retracted_reason or "")


async def _change(conn: AsyncConnection, alert: Alert, **values: Any) -> None:
    result = await conn.execute(
        update(alerts)
        .where(alerts.c.id == alert.id, alerts.c.version == alert.version)
        .values(**values, version=alert.version + 1)
    )
    if result.rowcount != 1:
        raise ConcurrentChange(alert_ref(alert.id))


# --- copies that have not left yet ------------------------------------------------------
# These touch outbox rows, but only an alert's own (message key alert:<id>): what may still
# leave after an alert changed is a question about the alert.


async def rewrite_held_copy(
    conn: AsyncConnection, message_key: str, target: str, message: Message
) -> None:
    """A copy held back (its destination needs a person to fix something) leaves with the
    alert as it is now, not as it was; so do edits of it waiting behind it."""
    await conn.execute(
        update(outbox)
        .where(
            outbox.c.message_key == message_key,
            outbox.c.target == target,
            outbox.c.op.in_(("post", "edit")),
            outbox.c.state.in_((PENDING, HELD)),
        )
        .values(payload=message.model_dump(mode="json"))
    )


async def cancel_unsent_copies(
    conn: AsyncConnection,
    message_key: str,
    *,
    target: str | None = None,
    why: str = "alert retracted before it was sent",
) -> int:
    """Withdraw every copy of an alert that has not left yet (or only the one for
    ``target``): nobody has seen them, so nobody needs to hear about them. Returns how
    many."""
    where = [outbox.c.message_key == message_key, outbox.c.state.in_((PENDING, HELD))]
    if target is not None:
        where.append(outbox.c.target == target)
    result = await conn.execute(
        update(outbox).where(*where).values(state=SUPERSEDED, last_error=why)
    )
    return int(result.rowcount or 0)
