"""Turning a released alert's plan into deliveries: now through the outbox, or into the
partners' digests. Used at release and when a scheduled alert's time comes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.alert_messages import partner_copy
from bot.alerts import Alert, Timing, alert_key, goes_to_digest
from bot.dissemination import Plan
from storage import digests_repo, outbox_repo


async def dispatch(
    conn: AsyncConnection, alert: Alert, plan: Plan, *, timing: Timing, now: datetime
) -> tuple[int, int]:
    """Queue every planned copy; returns (sent now, waiting for a digest)."""
    copy = partner_copy(alert)
    digested = 0
    now_targets: list[str] = []
    for delivery in plan.deliveries:
        if goes_to_digest(delivery, timing):
            await digests_repo.queue_item(
                conn,
                alert_id=alert.id,
                partner_id=delivery.partner_id,
                target=delivery.target,
                now=now,
            )
            digested += 1
        else:
            now_targets.append(delivery.target)
    # In plan order, in one statement: a fan-out to 1,000 channels is one INSERT.
    await outbox_repo.enqueue_posts(
        conn, targets=now_targets, message=copy, now=now, message_key=alert_key(alert.id)
    )
    return len(now_targets), digested
