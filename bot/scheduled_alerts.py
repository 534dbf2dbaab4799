"""Alerts confirmed with ``at:``: released when their time comes, to the audience the
policy allows at that moment."""

from __future__ import annotations

from bot.addresses import spell
from bot.alert_release import release_now
from bot.alerts import Alert
from bot.core import Core
from bot.dissemination import AlertSpec, plan_dissemination
from bot.replies import direct_message
from storage import alert_schedule_repo, alerts_repo
from storage.audit_repo import append_audit


def _spec(alert: Alert) -> AlertSpec:
    return AlertSpec(
        tlp=alert.tlp,
        caveats=frozenset(alert.caveats),
        category=alert.category,
        region=alert.region,
        to=None if alert.audience is None else tuple(alert.audience),
    )


async def release_due_alerts(core: Core) -> int:
    """Release every scheduled alert whose time has come; returns how many."""
    now = core.clock.now()
    released = 0
    async with core.transaction() as conn:
        for alert in await alert_schedule_repo.scheduled_due(conn, now):
            plan = plan_dissemination(core.policy, _spec(alert))
            if not plan.deliveries:
                # Clearances changed since it was confirmed: nobody may receive it now.
                await alerts_repo.mark_released(
                    conn, alert, by=alert.created_by, plan=plan, now=now
                )
                await append_audit(
                    conn,
                    at=now,
                    actor="system:scheduler",
                    action="alert.undeliverable",
                    subject=alert.ref,
                    details={"excluded": {e.partner_id: e.reason for e in plan.excluded}},
                )
                await direct_message(
                    conn,
                    alert.created_by,
                    f"Scheduled alert {alert.ref} reached its time, but under the policy now in "
                    f"force no partner may receive it, so nothing was sent. "
                    f"{spell(alert.created_by, 'alert')} {alert.ref} shows why.",
                    now=now,
                )
                continue
            await release_now(conn, alert, plan, by=alert.created_by, timing="now", now=now)
            released += 1
    return released
