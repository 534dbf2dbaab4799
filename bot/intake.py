"""Filing a tip: commit it, route a review card, then (and only then) tell the officer."""

from __future__ import annotations

import logging

from bot import metrics
from bot.addresses import platform_of, spell
from bot.audit import TIP_FILED
from bot.card_render import render_card
from bot.cards import card_key
from bot.categories import CATEGORIES
from bot.core import Core
from bot.errors import NOTHING_CHANGED, UserError
from bot.replies import ReplyTo, reply_post
from bot.tips import Tip, TipDraft
from storage import outbox_repo, tips_repo
from storage.audit_repo import append_audit
from storage.db import CommitOutcomeUnknown

log = logging.getLogger(__name__)


async def file_tip(
    core: Core, to: ReplyTo, draft: TipDraft, *, source_key: str | None = None
) -> Tip:
    try:
        return await _file_tip(core, to, draft, source_key)
    except CommitOutcomeUnknown:
        if source_key is None:
            raise
        # The database connection failed during the commit. With the platform's request
        # id the outcome can be found: filed (its card and receipt were committed with it
        # and go out as usual) or not (then nothing was, and the officer is told so).
        try:
            async with core.db.read() as conn:
                tip = await tips_repo.tip_by_source_key(conn, source_key)
        except Exception:
            log.exception("tip %s: could not find out whether its commit happened", source_key)
            raise CommitOutcomeUnknown(source_key) from None
        if tip is None:
            raise UserError(NOTHING_CHANGED) from None
        log.warning("%s: its commit was cut off but had happened", tip.ref)
        metrics.TIPS_FILED.labels(platform_of(to.actor)).inc()
        core.wake_outbox()
        return tip


async def _file_tip(core: Core, to: ReplyTo, draft: TipDraft, source_key: str | None) -> Tip:
    policy = core.policy
    now = core.clock.now()
    async with core.transaction() as conn:
        tip, created = await tips_repo.insert_tip(
            conn, draft, officer=to.actor, channel=to.channel, now=now, source_key=source_key
        )
        if not created:
            return tip  # a platform's redelivery of a tip we already have
        review = policy.review_for(tip.category, tip.urgency)
        card = await render_card(core, conn, tip, notes=[])  # a new tip has no notes yet
        category = CATEGORIES[tip.category]
        receipt = (
            f"Received {tip.ref} ({category.code} — {category.label}, {tip.urgency.value}). "
            f"It is with the {review.name} analysts. "
            f"Follow it with {spell(to.actor, 'status')} {tip.ref}."
        )
        if draft.extra.get("defaulted_category"):
            receipt += (
                " No category was given, so it is filed as OTHER; add | category: … next time."
            )
        # The card (once per review channel; its keys name the tip created just now, in
        # this transaction, so none exists yet) and the receipt: one statement.
        key = card_key(tip.id)
        posts = [
            outbox_repo.NewPost(
                target=channel, message=card, message_key=key, key=f"{key}@{channel}"
            )
            for channel in dict.fromkeys(review.channels)
        ]
        posts.append(reply_post(to, receipt))
        await outbox_repo.enqueue_new_posts(conn, posts, now=now)
        # Committed with the tip or not at all. On PostgreSQL its place in the chain is
        # taken during the commit (storage/audit_repo.py), so concurrent tips don't wait
        # for one another here; SQLite's write lock serialises the whole filing anyway.
        await append_audit(
            conn,
            at=now,
            actor=to.actor,
            action=TIP_FILED,
            subject=tip.ref,
            details={"category": tip.category, "urgency": tip.urgency.value, "channel": to.channel},
        )
    metrics.TIPS_FILED.labels(platform_of(to.actor)).inc()
    return tip
