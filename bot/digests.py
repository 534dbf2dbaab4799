"""Digests: one message per partner channel and digest period, listing the alerts queued
for it with their markings. Nothing is sent for an empty period. Sending is idempotent:
the period is part of the outbox key, and items are taken by the digest that sends them."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.addresses import spell
from bot.alerts import Alert, AlertState, ClearedNow, cleared_now
from bot.cards import local_time
from bot.core import Core
from bot.messages import Message
from bot.policy import Partner, Policy
from bot.tlp import TLP
from bot.wording import counted
from storage import alert_schedule_repo, digests_repo, outbox_repo
from storage.audit_repo import append_audit

log = logging.getLogger(__name__)

SCHEDULER_ACTOR = "system:scheduler"
# A cron that fires every minute, left unsent for months, is still walked in bounded time.
_MAX_STEPS = 200_000


def latest_fire(cron: str, tz: ZoneInfo, *, since: datetime, now: datetime) -> datetime | None:
    """The last time the digest schedule fired in (since, now], or None if it hasn't."""
    trigger = CronTrigger.from_crontab(cron, timezone=tz)
    fire = trigger.get_next_fire_time(None, since)
    if fire is None or fire > now:
        return None
    for _ in range(_MAX_STEPS):
        # The next fire after this one, asked from the UTC instant just past it and without
        # a previous fire time. In the hour repeated when DST ends, APScheduler 3.11 given
        # the previous fire (01:30 EST) and a local "just after" answers 01:30 EST again:
        # local datetime arithmetic drops ``fold``. The walk then stalled for _MAX_STEPS
        # steps (seconds of CPU inside a transaction) and returned a stale period.
        following = trigger.get_next_fire_time(
            None, fire.astimezone(UTC) + timedelta(microseconds=1)
        )
        if following is None or following > now:
            break
        fire = following
    return fire


def next_fire(cron: str, tz: ZoneInfo, *, after: datetime) -> datetime | None:
    """When the digest schedule next fires after ``after``: when a copy waiting for the
    partner's next digest goes."""
    fire = CronTrigger.from_crontab(cron, timezone=tz).get_next_fire_time(None, after)
    return None if fire is None else fire.astimezone(UTC)


def digest_key(partner_id: str, period: datetime) -> str:
    return f"digest:{partner_id}:{period.isoformat()}"


def period_of(key: str) -> datetime:
    return datetime.fromisoformat(key.split(":", 2)[2])


async def send_digests(core: Core) -> int:
    """Send every digest whose period has come; returns how many digest messages."""
    policy = core.policy
    now = core.clock.now()
    sent = 0
    async with core.transaction() as conn:
        items = await digests_repo.waiting(conn, lock=True)
        alerts = await alert_schedule_repo.get_alerts(conn, sorted({i.alert_id for i in items}))
        by_partner: dict[str, list[digests_repo.DigestItem]] = defaultdict(list)
        for item in items:
            by_partner[item.partner_id].append(item)
        for partner_id, group in by_partner.items():
            partner = policy.partner(partner_id)
            if partner is None:
                await _drop(conn, group, f"partner {partner_id} is no longer in the policy", now)
                continue
            oldest = min(i.queued_at for i in group)
            period = latest_fire(partner.digest, policy.center.tz, since=oldest, now=now)
            if period is None:
                continue
            ready = [i for i in group if i.queued_at <= period]
            sent += await _send_one(conn, policy, partner, period, ready, alerts, now)
    return sent


async def _send_one(
    conn: AsyncConnection,
    policy: Policy,
    partner: Partner,
    period: datetime,
    ready: list[digests_repo.DigestItem],
    alerts: dict[int, Alert],
    now: datetime,
) -> int:
    key = digest_key(partner.id, period)
    await digests_repo.take(conn, [i.id for i in ready], key)
    by_target: dict[str, list[Alert]] = defaultdict(list)
    withheld: list[str] = []
    cleared: dict[int, ClearedNow] = {}
    for item in ready:
        alert = alerts[item.alert_id]
        if alert.state is not AlertState.RELEASED:
            continue  # retracted before its digest: it never goes out
        if alert.id not in cleared:
            # The policy may have changed since release: only what it allows now goes out.
            cleared[alert.id] = cleared_now(policy, alert)
        if not cleared[alert.id].allows(item.target, item.partner_id):
            withheld.append(f"{alert.ref}@{item.target}")
            continue
        by_target[item.target].append(alert)
    for target, listed in by_target.items():
        await outbox_repo.enqueue_post(
            conn,
            target=target,
            message=render_digest(partner.name, target, period, listed, policy.center.tz),
            now=now,
            message_key=key,
            key=f"{key}@{target}",
        )
    await append_audit(
        conn,
        at=now,
        actor=SCHEDULER_ACTOR,
        action="digest.sent",
        subject=key,
        details={
            "partner": partner.id,
            "targets": {t: [a.ref for a in listed] for t, listed in by_target.items()},
            "withheld": withheld,
        },
    )
    return len(by_target)


async def _drop(
    conn: AsyncConnection, items: list[digests_repo.DigestItem], reason: str, now: datetime
) -> None:
    await digests_repo.take(conn, [i.id for i in items], "dropped")
    await append_audit(
        conn,
        at=now,
        actor=SCHEDULER_ACTOR,
        action="digest.dropped",
        subject="digest",
        details={"items": [f"A-{i.alert_id}@{i.target}" for i in items], "reason": reason},
    )


def render_digest(
    partner_name: str,
    target: str,
    period: datetime,
    listed: list[Alert],
    tz: ZoneInfo,
    *,
    withdrawn: frozenset[int] = frozenset(),
) -> Message:
    """The digest carries the highest marking of what it lists, and each alert its own.
    ``withdrawn``: alerts the policy no longer clears for this place, listed without
    their content (an edit after a reload must not carry what the place may not see)."""
    top = max((a.tlp for a in listed), key=lambda t: t.rank, default=TLP.CLEAR)
    caveats = sorted({c for a in listed for c in a.caveats})
    entries = []
    for alert in listed:
        marking = " // ".join([alert.tlp.label, *alert.caveats])
        if alert.state is AlertState.RETRACTED:
            entries.append(f"{alert.ref} · {marking} · RETRACTED — do not act on it.")
        elif alert.id in withdrawn:
            entries.append(
                f"{alert.ref} · {marking} · WITHDRAWN from here — no longer cleared for "
                "this channel; do not act on it."
            )
        else:
            # Each line kept (the Location: and When: lines are facts of their own), each
            # line's spacing tidied, the whole cut to what a digest entry can hold.
            body = "\n".join(
                " ".join(line.split()) for line in alert.body.splitlines() if line.strip()
            )
            body = body if len(body) <= 300 else body[:299] + "…"
            updated = " · UPDATED" if alert.updated_since_release else ""
            entries.append(f"{alert.ref} · {marking} · {alert.title}{updated}\n{body}")
    return Message(
        header=f"Digest for {partner_name} · {local_time(period, tz)} · {counted(len(listed), 'alert')}",
        text="\n\n".join(entries),
        tlp=top,
        caveats=caveats,
        footer=f"Feedback on any alert: {spell(target, 'feedback')} A-n useful|not-useful [comment]",
    )


@dataclass(frozen=True)
class DigestEdits:
    """The places whose digest an alert's change edited, and of those the ones where the
    alert is now shown withdrawn (the policy no longer clears it there)."""

    edited: tuple[str, ...] = ()
    withdrawn: tuple[str, ...] = ()


async def refresh_digests_for(core: Core, conn: AsyncConnection, alert_id: int) -> DigestEdits:
    """After an alert changed (updated, retracted), edit every digest that listed it."""
    policy = core.policy
    edited: list[str] = []
    withdrawn_here: list[str] = []
    # An alert is planned once, however many digests list it.
    cleared: dict[int, ClearedNow] = {}
    taken = [
        i
        for i in await digests_repo.items_for_alert(conn, alert_id)
        if i.digest_key and i.digest_key.startswith("digest:")
    ]
    for key, target in {(i.digest_key, i.target) for i in taken if i.digest_key}:
        in_digest = [i for i in await digests_repo.items_in_digest(conn, key) if i.target == target]
        alerts = await alert_schedule_repo.get_alerts(conn, [i.alert_id for i in in_digest])
        partner_id = in_digest[0].partner_id
        if not await outbox_repo.message_targets(conn, key):
            continue
        # A partner a reload removed still holds the digest: it is edited all the same
        # (a retraction must reach it), and what it listed is withdrawn there.
        partner = policy.partner(partner_id)
        name = partner.name if partner is not None else partner_id
        listed = [
            alerts[i.alert_id]
            for i in in_digest
            if alerts[i.alert_id].state is not AlertState.SCHEDULED
        ]
        for a in listed:
            if a.id not in cleared:
                cleared[a.id] = cleared_now(policy, a)
        withdrawn = frozenset(
            a.id
            for a in listed
            if a.state is AlertState.RELEASED and not cleared[a.id].allows(target, partner_id)
        )
        message = render_digest(
            name, target, period_of(key), listed, policy.center.tz, withdrawn=withdrawn
        )
        await outbox_repo.enqueue_edit(
            conn, target=target, message_key=key, message=message, now=core.clock.now()
        )
        (withdrawn_here if alert_id in withdrawn else edited).append(target)
    return DigestEdits(tuple(edited), tuple(withdrawn_here))
