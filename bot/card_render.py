"""A tip's review card as it stands now: the tip, its notes and the similar open tips."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from bot.cards import card_key, review_card
from bot.core import Core
from bot.messages import Message
from bot.similarity import Similar, place_term, similar_tips, word_terms
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
    return review_card(
        tip, notes, await similar_open_tips(conn, tip), core.policy.center.tz, overdue=overdue
    )


SHOWN = 3


async def similar_open_tips(conn: AsyncConnection, tip: Tip) -> list[Similar]:
    """The open tips most like this one among the 500 most recent (as before): the
    database finds and ranks them by shared terms (the index of open tips' words and
    places, storage.tips_repo.similar_open_tips), and only the few shown come back, their
    reasons worded from their own text."""
    if tip.purged_at is not None:
        return []  # a purged tip's card shows nothing of it, nor what was like it
    candidates = await tips_repo.similar_open_tips(
        conn,
        word_terms(tip.summary, tip.details),
        place_term(tip.location),
        exclude=tip.id,
        limit=SHOWN,
    )
    return similar_tips(tip, candidates, limit=SHOWN)


async def refresh_card(core: Core, conn: AsyncConnection, tip: Tip) -> None:
    """Edit the tip's card in place wherever it was posted."""
    card = await render_card(core, conn, tip)
    for target in await outbox_repo.message_targets(conn, card_key(tip.id)):
        await outbox_repo.enqueue_edit(
            conn, target=target, message_key=card_key(tip.id), message=card, now=core.clock.now()
        )
