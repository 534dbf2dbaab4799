"""!tip — an officer files what they saw."""

from __future__ import annotations

from bot.categories import category_list
from bot.intake import file_tip
from commands.context import Context
from commands.registry import Role, command
from commands.tip_parser import parse_tip


@command(
    "tip",
    role=Role.OFFICER,
    usage="<what you saw> [| category: …] [| location: …] [| region: …] [| when: …] "
    "[| urgency: immediate|priority|routine] [| details: …]",
    summary="File a tip. Describe behaviour, never who someone is. Categories: " + category_list(),
    examples=(
        "tip Man photographing the substation fence | category: photo | location: 5th & Main",
    ),
)
async def tip(ctx: Context, args: str) -> None:
    draft = parse_tip(args, ctx.core.policy)
    await file_tip(ctx.core, ctx.reply_to, draft, source_key=ctx.command.source_key)
