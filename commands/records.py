"""Records review under 28 CFR Part 23: what is due, and validating a record."""

from __future__ import annotations

from bot.cards import local_time
from bot.messages import Message
from bot.retention import due_for_review, review_due_on, validate_record
from commands.context import Context
from commands.registry import Role, command
from commands.triage import tip_and_text

_SHOWN = 50


@command(
    "review-due",
    role=Role.SUPERVISOR,
    summary="Records due for their retention review (28 CFR Part 23), longest overdue first.",
)
async def review_due(ctx: Context, args: str) -> None:
    core = ctx.core
    tz = core.policy.center.tz
    years = core.policy.retention.review_years
    due = await due_for_review(core)
    if not due:
        await ctx.answer(
            Message(header="Records due for review (0)", text="No record is due for review.")
        )
        return
    lines = [
        f"{tip.ref} · {tip.state.label} · {tip.category} · "
        f"{'validated' if tip.reviewed_at else 'filed'} "
        f"{local_time(tip.reviewed_at or tip.filed_at, tz)} · "
        f"due {local_time(review_due_on(tip, years), tz)}"
        for tip in due[:_SHOWN]
    ]
    if len(due) > _SHOWN:
        lines.append(f"…and {len(due) - _SHOWN} more.")
    lines.append(
        f"Keep a record for another {years} years: {ctx.spell('validate')} {due[0].ref} <reason>"
    )
    await ctx.answer(Message(header=f"Records due for review ({len(due)})", text="\n".join(lines)))


@command(
    "validate",
    role=Role.SUPERVISOR,
    usage="T-1 <reason>",
    summary="Record a review that found the record still valid; its retention period "
    "starts again today.",
)
async def validate(ctx: Context, args: str) -> None:
    tip_id, reason = tip_and_text(ctx, args, "validate", "reason")
    await validate_record(ctx.core, ctx.reply_to, tip_id, reason)
