"""Plain words in a direct message with the bot. In a channel, text that isn't a command
is people talking to each other and the bot stays out of it; in a direct message the
words are for the bot, and silence would leave an officer believing an answer or a tip
arrived. So the bot answers with the command that does what they most likely meant."""

from __future__ import annotations

import re

from commands.context import Context
from storage import tips_repo

# "tip Man at the fence" is how officers write a tip to the bot on any platform.
_TIP = re.compile(r"^tip(?:\s|$)", re.IGNORECASE)
# Longer than this, the words are not put into a command to copy.
_QUOTED = 500


def as_command(text: str) -> str | None:
    """``tip …`` in a direct message is ``!tip …``; None for other words."""
    stripped = text.strip()
    return "!" + stripped if _TIP.match(stripped) else None


async def answer_plain_words(ctx: Context, text: str) -> None:
    """Tell the person which command sends what they wrote."""
    async with ctx.core.db.read() as conn:
        waiting = await tips_repo.tips_waiting_for_officer(conn, ctx.actor)
    words = " ".join(text.split())
    said = words if len(words) <= _QUOTED else "<your answer>"
    reply_, tip, help_ = ctx.spell("reply"), ctx.spell("tip"), ctx.spell("help")
    if len(waiting) == 1:
        ref = waiting[0].ref
        answer = (
            f"I act only on commands, so that wasn't sent to anyone. If it is your answer "
            f"about {ref}, send it as:\n{reply_} {ref} {said}"
        )
    elif waiting:
        refs = ", ".join(t.ref for t in waiting)
        answer = (
            f"I act only on commands, so that wasn't sent to anyone. Tips waiting for your "
            f"answer: {refs}. Answer one with: {reply_} {waiting[0].ref} {said}"
        )
    else:
        answer = (
            "I act only on commands, so that wasn't sent to anyone. To report something: "
            f"{tip} <what you saw> | category: … | location: …  {help_} lists what you can do."
        )
    await ctx.answer(answer)
