"""!status — officers follow their tips; analysts see the queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.cards import OVERDUE_NOTE, outcome_field, status_line, tip_fields
from bot.errors import UserError
from bot.messages import Message, MessageField
from bot.tips import TipState, parse_tip_ref
from bot.triage import load_tip
from commands.context import Context
from commands.registry import Role, command
from storage import tips_repo

# The analysts' queue, and an officer's own tips, as one message each: a phone screen's
# worth of lines.
QUEUE_SHOWN = 20
MINE_SHOWN = 10


@command(
    "status",
    role=Role.ANYONE,
    usage="[T-1]",
    summary="Your tips and where each stands; with an id, one tip in full. "
    "Analysts without an id see the open queue, most urgent first.",
)
async def status(ctx: Context, args: str) -> None:
    core = ctx.core
    tz = core.policy.center.tz
    words = args.split()
    if len(words) > 1:
        ids = [parse_tip_ref(w) for w in words]
        if None in ids:
            raise UserError(f"One tip id at a time, please: {ctx.spell('status')} T-12.")
        raise UserError(
            "One tip at a time, please: "
            + ", then ".join(f"{ctx.spell('status')} T-{n}" for n in ids[:3])
            + "."
        )
    word = words[0] if words else ""
    async with core.db.read() as conn:
        if word:
            tip_id = parse_tip_ref(word)
            if tip_id is None:
                raise UserError(f"“{word[:30]}” is not a tip id; tip ids look like T-12.")
            tip = await load_tip(conn, tip_id)
            if tip.officer != ctx.actor and not core.policy.is_analyst(ctx.actor):
                raise UserError(
                    f"You can see only the tips you filed; {tip.ref} is not one of them."
                )
            notes = await tips_repo.notes_for(conn, tip.id)
            if tip.purged_at is None:
                fields = tip_fields(tip, tz)  # as its card shows it
            else:
                fields = [MessageField(label="State", value="purged under the retention policy")]
            fields += [
                MessageField(label="Question" if n.kind == "ask" else "Answer", value=n.text)
                for n in notes
            ]
            if tip.purged_at is None and (outcome := outcome_field(tip)) is not None:
                fields.append(outcome)
            summary = tip.summary if tip.purged_at is None else "(content purged)"
            # Still untriaged after its SLA's reminder: said here as on its card.
            overdue = tip.state is TipState.NEW and tip.sla_reminded_at is not None
            message = Message(
                header=tip.ref,
                text=summary,
                fields=fields,
                footer=OVERDUE_NOTE if overdue else None,
            )
        elif core.policy.is_analyst(ctx.actor):
            queue = await tips_repo.tips_in_queue(conn, limit=QUEUE_SHOWN)
            lines = [status_line(t, tz) for t in queue] or ["The queue is empty."]
            total = await _in_all(queue, QUEUE_SHOWN, lambda: tips_repo.open_tip_count(conn))
            footer = None
            if total > len(queue):
                footer = (
                    f"The {len(queue)} most urgent shown, oldest first within each urgency. "
                    f"{ctx.spell('status')} T-12 shows one tip in full."
                )
            message = Message(
                header=f"Open tips ({total:,})",
                text="\n".join(lines),
                footer=footer,
            )
        else:
            message = await _officers_tips(ctx, conn)
    await ctx.answer(message)


async def _officers_tips(ctx: Context, conn: AsyncConnection) -> Message:
    """Tips waiting for the officer's answer first, every one of them (an analyst's
    question must not drop out of sight behind newer tips), then the most recent others."""
    tz = ctx.core.policy.center.tz
    waiting = await tips_repo.tips_waiting_for_officer(conn, ctx.actor)
    recent = await tips_repo.tips_by_officer(conn, ctx.actor, limit=MINE_SHOWN)
    total = await _in_all(
        recent, MINE_SHOWN, lambda: tips_repo.tip_count_by_officer(conn, ctx.actor)
    )
    waiting_ids = {t.id for t in waiting}
    others = [t for t in recent if t.id not in waiting_ids][: max(MINE_SHOWN - len(waiting), 0)]
    shown = [*waiting, *others]
    lines = [status_line(t, tz) for t in shown] or [
        f"You have filed no tips yet. File one with {ctx.spell('tip')} <what you saw>."
    ]
    if total <= len(shown):
        return Message(header="Your tips", text="\n".join(lines))
    if waiting and not others:
        header = f"Your tips: the {len(waiting)} waiting for your answer, of {total:,}"
    elif waiting:
        header = (
            f"Your tips: {len(waiting)} waiting for your answer, then the {len(others)} most "
            f"recent of {total:,}"
        )
    else:
        header = f"Your tips: the {len(shown)} most recent of {total:,}"
    return Message(
        header=header,
        text="\n".join(lines),
        footer=f"An older tip: {ctx.spell('status')} T-n, with the number from its receipt.",
    )


async def _in_all(shown: Sequence[object], limit: int, count: Callable[[], Awaitable[int]]) -> int:
    """How many there are in all: counted only when the list is full (then more may be
    waiting than it shows); a shorter list is all of them."""
    return await count() if len(shown) == limit else len(shown)
