"""A tip's review card as it stands now: the tip, its notes and the similar open tips."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.cards import card_key, review_card
from bot.core import Core
from bot.messages import Message
from bot.similarity import similar_tips
from bot.tips import Tip, TipNote
from storage import outbox_repo, tips_repo


async def render_card(
    core: Core,
    conn: AsyncConnection,
    tip: Tip,
    *,
    overdue: bool = False,
    notes: list[TipNote] | None = None,
) -> Message:
    if notes is None:
        notes = await tips_repo.notes_for(conn, tip.id)
    candidates = await tips_repo.open_tips(conn, exclude=tip.id)
    return review_card(
        tip, notes, similar_tips(tip, candidates), core.policy.center.tz, overdue=overdue
    )


async def refresh_card(core: Core, conn: AsyncConnection, tip: Tip) -> None:
    """Edit the tip's card in place wherever it was posted."""
    card = await render_card(core, conn, tip)
    for target in await outbox_repo.message_targets(conn, card_key(tip.id)):
        await outbox_repo.enqueue_edit(
            conn, target=target, message_key=card_key(tip.id), message=card, now=core.clock.now()
        )
