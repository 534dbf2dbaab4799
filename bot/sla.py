"""SLA reminders: an untriaged tip is flagged on its card, and its review channels are
nudged once, when it has waited longer than the policy's minutes for its urgency.

A scheduler job calls :func:`remind_overdue`; running it twice, or in two processes at
once, reminds about each tip once (a conditional update decides who does the work, and the
reminder posts carry fixed outbox keys).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.addresses import spell
from bot.card_render import refresh_card
from bot.cards import card_key
from bot.core import Core
from bot.job_runs import count_done
from bot.messages import Message
from bot.outbox_worker import SYSTEM_ACTOR
from bot.policy import Sla
from bot.tips import Tip, Urgency
from storage import outbox_repo, tips_repo
from storage.audit_repo import append_audit


def sla_cutoffs(sla: Sla, now: datetime) -> dict[Urgency, datetime]:
    """For each urgency, the latest filing time that is overdue at ``now``."""
    return {urgency: now - timedelta(minutes=sla.minutes_for(urgency)) for urgency in Urgency}


def reminder_key(tip_id: int, target: str) -> str:
    return f"sla:{tip_id}@{target}"


def reminder_message(tip: Tip, target: str, now: datetime) -> Message:
    waited = int((now - tip.filed_at).total_seconds() // 60)
    claim = f"{spell(target, 'claim')} {tip.ref}"
    return Message(
        text=f"⏰ {tip.ref} ({tip.urgency.value}) has waited {_duration(waited)} "
        f"without triage — {claim}"
    )


async def remind_overdue(core: Core) -> int:
    """Remind about every untriaged tip past its SLA; returns how many were reminded."""
    now = core.clock.now()
    async with core.db.read() as conn:
        candidates = await tips_repo.untriaged_past(conn, sla_cutoffs(core.policy.sla, now))
    return await count_done(
        [tip.id for tip in candidates], lambda tip_id: _remind(core, tip_id, now), "an SLA reminder"
    )


async def _remind(core: Core, tip_id: int, now: datetime) -> bool:
    async with core.transaction() as conn:
        tip = await tips_repo.mark_sla_reminded(conn, tip_id, now=now)
        if tip is None:  # triaged, purged or reminded about since we looked
            return False
        await refresh_card(core, conn, tip)  # the card now carries the overdue marker
        targets = await outbox_repo.message_targets(conn, card_key(tip.id))
        if not targets:  # the card was never queued; nudge where it would have gone
            targets = core.policy.review_for(tip.category, tip.urgency).channels
        for target in targets:
            await outbox_repo.enqueue_post(
                conn,
                target=target,
                message=reminder_message(tip, target, now),
                now=now,
                key=reminder_key(tip.id, target),
            )
        await append_audit(
            conn,
            at=now,
            actor=SYSTEM_ACTOR,
            action="tip.sla_reminder",
            subject=tip.ref,
            details={
                "urgency": tip.urgency.value,
                "sla_minutes": core.policy.sla.minutes_for(tip.urgency),
                "waited_minutes": int((now - tip.filed_at).total_seconds() // 60),
                "channels": targets,
            },
        )
    return True


def _duration(minutes: int) -> str:
    if minutes < 120:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    return f"{hours // 24} days"
