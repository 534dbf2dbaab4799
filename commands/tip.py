"""!tip — an officer files what they saw."""

from __future__ import annotations

import re

from bot.categories import category_list
from bot.errors import UserError
from bot.intake import file_tip
from commands.context import Context
from commands.registry import Role, command
from commands.tip_parser import ResendOffered, parse_tip, parse_tip_form

# A tip this short is as quickly typed again as copied from a refusal.
_RETYPED_WORDS = 3


@command(
    "tip",
    role=Role.OFFICER,
    usage="<what you saw> [| category: …] [| location: …] [| region: …] [| when: …] "
    "[| urgency: immediate|priority|routine] [| details: …]",
    summary="File a tip. Describe behaviour, never who someone is. Fields may also follow "
    "; or , or stand on lines of their own. Categories: " + category_list(),
    examples=(
        "tip Man photographing the substation fence | category: photo | location: 5th & Main",
    ),
)
async def tip(ctx: Context, args: str) -> None:
    spelled = ctx.spell("tip")
    if ctx.command.form is not None:
        draft = parse_tip_form(ctx.command.form, ctx.core.policy)
        await file_tip(ctx.core, ctx.reply_to, draft, source_key=ctx.command.source_key)
        return
    try:
        draft = parse_tip(args, ctx.core.policy, spelled=spelled)
    except ResendOffered:
        raise
    except UserError as exc:
        # Once sent, the typed text is gone from the officer's input box (Slack): give it
        # back to be corrected rather than typed again on a phone.
        if len(re.findall(r"\w+", args)) <= _RETYPED_WORDS:
            raise
        raise UserError(f"{exc}\nYour tip, to correct and send again: {spelled} {args}") from None
    await file_tip(ctx.core, ctx.reply_to, draft, source_key=ctx.command.source_key)
