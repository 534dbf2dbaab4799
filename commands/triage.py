"""Triage commands. Each one is also a button on the review card."""

from __future__ import annotations

from bot.alert_release import preview, release
from bot.errors import UserError
from bot.lifecycle import Verb
from bot.tips import parse_tip_ref
from bot.triage import Triage, triage
from commands.approve_parser import USAGE, format_approve, parse_approve
from commands.context import Context
from commands.registry import Role, command
from commands.text import first_word


def tip_and_text(
    ctx: Context, args: str, verb: str, rest_name: str | None = None
) -> tuple[int, str]:
    word, rest = first_word(args)
    usage = f"{ctx.spell(verb)} T-1" + (f" <{rest_name}>" if rest_name else "")
    if not word:
        raise UserError(f"Which tip? Usage: {usage}")
    tip_id = parse_tip_ref(word)
    if tip_id is None:
        raise UserError(f"“{word[:30]}” is not a tip id; tip ids look like T-12. Usage: {usage}")
    if rest_name and not rest:
        # The usage names the tip they typed: copied back as T-1, it would act on another.
        usage = f"{ctx.spell(verb)} T-{tip_id} <{rest_name}>"
        raise UserError(f"Please add the {rest_name}. Usage: {usage}")
    return tip_id, rest


@command("claim", role=Role.ANALYST, usage="T-1", summary="Take a tip to work on it.")
async def claim(ctx: Context, args: str) -> None:
    tip_id, _ = tip_and_text(ctx, args, "claim")
    await triage(ctx.core, ctx.reply_to, Triage(tip_id, Verb.CLAIM))


@command(
    "unclaim",
    role=Role.ANALYST,
    usage="T-1",
    summary="Give a tip you hold back to the queue (end of shift, wrong desk); a supervisor "
    "may give back anyone's.",
)
async def unclaim(ctx: Context, args: str) -> None:
    tip_id, _ = tip_and_text(ctx, args, "unclaim")
    await triage(ctx.core, ctx.reply_to, Triage(tip_id, Verb.UNCLAIM))


@command(
    "ask",
    role=Role.ANALYST,
    usage="T-1 <question>",
    summary="Ask the officer who filed the tip a question (they get it by direct message).",
)
async def ask(ctx: Context, args: str) -> None:
    tip_id, question = tip_and_text(ctx, args, "ask", "question")
    await triage(ctx.core, ctx.reply_to, Triage(tip_id, Verb.ASK, text=question))


@command(
    "reply",
    role=Role.OFFICER,
    usage="T-1 <answer>",
    summary="Answer an analyst's question about your tip, or add facts to it.",
)
async def reply(ctx: Context, args: str) -> None:
    tip_id, answer = tip_and_text(ctx, args, "reply", "answer")
    await triage(ctx.core, ctx.reply_to, Triage(tip_id, Verb.REPLY, text=answer))


@command("reject", role=Role.ANALYST, usage="T-1 <reason>", summary="Close a tip without action.")
async def reject(ctx: Context, args: str) -> None:
    tip_id, reason = tip_and_text(ctx, args, "reject", "reason")
    await triage(ctx.core, ctx.reply_to, Triage(tip_id, Verb.REJECT, text=reason))


@command(
    "dup",
    role=Role.ANALYST,
    usage="T-1 T-2",
    summary="Mark T-1 as a duplicate of T-2 (the original).",
    aliases=("duplicate",),
)
async def dup(ctx: Context, args: str) -> None:
    tip_id, rest = tip_and_text(ctx, args, "dup", "original tip id")
    word, _ = first_word(rest)
    other = parse_tip_ref(word)
    if other is None:
        raise UserError(
            f"“{word[:30]}” is not a tip id. Usage: {ctx.spell('dup')} T-1 T-2 (T-1 duplicates T-2)"
        )
    await triage(ctx.core, ctx.reply_to, Triage(tip_id, Verb.DUPLICATE, other_id=other))


@command(
    "approve",
    role=Role.ANALYST,
    usage=USAGE,
    summary="Approve a tip you hold and release it as an alert. Without confirm it shows "
    "who will see it (each partner reached, each left out and why) and changes nothing; "
    "add confirm to send. TLP:AMBER unless tlp: says otherwise; TLP:RED and sending to "
    "all partners need a supervisor. at: takes a time in the center's time zone "
    "(at:2026-12-01 07:00, or at:07:00 for the next 07:00). title: goes last and takes "
    "the rest of the line; put the title in quotes if it holds words like confirm.",
    examples=(
        "approve T-1 tlp:green to:metro-pd",
        "approve T-1 to:metro-pd at:2026-12-01 07:00",
        "approve T-1 tlp:amber caveat:LES to:metro-pd confirm title: Substation surveillance",
    ),
)
async def approve(ctx: Context, args: str) -> None:
    core = ctx.core
    command_name = ctx.spell("approve")
    request, confirm = parse_approve(args, core.policy, now=core.clock.now(), command=command_name)
    confirm_command = format_approve(request, command=command_name, confirm=True)
    if confirm:
        await release(core, ctx.reply_to, request, confirm_command)
    else:
        await preview(core, ctx.reply_to, request, confirm_command)
