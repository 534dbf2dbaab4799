"""Filing a tip: commit it, route a review card, then (and only then) tell the officer."""

from __future__ import annotations

from bot import metrics
from bot.addresses import platform_of
from bot.card_render import render_card
from bot.cards import card_key
from bot.categories import CATEGORIES
from bot.core import Core
from bot.replies import ReplyTo, reply
from bot.tips import Tip, TipDraft
from storage import outbox_repo, tips_repo
from storage.audit_repo import append_audit


async def file_tip(
    core: Core, to: ReplyTo, draft: TipDraft, *, source_key: str | None = None
) -> Tip:
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
        for channel in dict.fromkeys(review.channels):  # each once: the keys are new
            await outbox_repo.enqueue_post(
                conn,
                target=channel,
                message=card,
                now=now,
                message_key=card_key(tip.id),
                key=f"{card_key(tip.id)}@{channel}",
                key_is_new=True,  # the tip was created just now, in this transaction
            )
        category = CATEGORIES[tip.category]
        receipt = (
            f"Received {tip.ref} ({category.code} — {category.label}, {tip.urgency.value}). "
            f"It is with the {review.name} analysts. Follow it with !status {tip.ref}."
        )
        if draft.extra.get("defaulted_category"):
            receipt += (
                " No category was given, so it is filed as OTHER; add | category: … next time."
            )
        await reply(conn, to, receipt, now=now)
        # Last, just before the commit: on PostgreSQL the audit head's row lock serialises
        # every writer from here to the commit, so concurrent tips do the rest side by side.
        await append_audit(
            conn,
            at=now,
            actor=to.actor,
            action="tip.filed",
            subject=tip.ref,
            details={"category": tip.category, "urgency": tip.urgency.value, "channel": to.channel},
        )
    metrics.TIPS_FILED.labels(platform_of(to.actor)).inc()
    return tip
