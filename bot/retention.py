"""Retention under 28 CFR Part 23 practice.

- Rejected tips are purged after the policy's ``rejected_days``: their content goes, the
  bare record and an audit row saying so stay, and their review cards are edited to say so.
- Every other record is reviewed after ``review_years``; a review that validates it starts
  a new period (reviewer, date and reason recorded in the audit log).

What a purge cannot reach: direct messages already delivered (the rejection notice, an
analyst's question) stay in the platforms' histories, and audit rows written while the tip
was worked keep what they recorded (the chain is append-only).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.addresses import spell
from bot.card_render import refresh_card
from bot.cards import card_key
from bot.core import Core
from bot.errors import UserError
from bot.job_runs import count_done
from bot.messages import Message
from bot.outbox_worker import SYSTEM_ACTOR
from bot.replies import ReplyTo, reply
from bot.tips import Tip, TipState
from bot.triage import tip_messages_key
from storage import outbox_repo, tips_repo
from storage.audit_repo import append_audit


def years_before(when: datetime, years: int) -> datetime:
    """The same instant ``years`` calendar years earlier (29 February becomes the 28th)."""
    try:
        return when.replace(year=when.year - years)
    except ValueError:
        return when.replace(year=when.year - years, day=28)


def years_after(when: datetime, years: int) -> datetime:
    return years_before(when, -years)


async def purge_expired(core: Core) -> int:
    """Purge every rejected tip past its retention; returns how many were purged."""
    now = core.clock.now()
    cutoff = now - timedelta(days=core.policy.retention.rejected_days)
    async with core.db.read() as conn:
        expired = await tips_repo.rejected_before(conn, cutoff)
    return await count_done(
        [tip.id for tip in expired], lambda tip_id: _purge(core, tip_id, now), "purging a tip"
    )


async def _purge(core: Core, tip_id: int, now: datetime) -> bool:
    async with core.transaction() as conn:
        tip = await tips_repo.purge_tip(conn, tip_id, now=now)
        if tip is None:  # purged by another run since we looked
            return False
        # The ref, category and dates only: the point of the row is that the content is gone.
        await append_audit(
            conn,
            at=now,
            actor=SYSTEM_ACTOR,
            action="tip.purged",
            subject=tip.ref,
            details={
                "category": tip.category,
                "filed_at": tip.filed_at.isoformat(),
                "decided_at": tip.decided_at.isoformat() if tip.decided_at else None,
                "rejected_days": core.policy.retention.rejected_days,
            },
        )
        # The outbox keeps what was sent: its stored copies of the card and of the direct
        # messages that quoted the tip lose their content too. (What platforms already
        # delivered stays in people's chat history.)
        stub = Message(text=f"{tip.ref}: content purged under the retention policy.")
        await outbox_repo.redact(conn, tip_messages_key(tip.id), stub, withdraw_waiting=True)
        await outbox_repo.redact(conn, card_key(tip.id), stub, withdraw_waiting=False)
        # Then the card is edited everywhere it was posted, so no copy shows content.
        await refresh_card(core, conn, tip)
    return True


async def due_for_review(core: Core) -> list[Tip]:
    """Records still held whose review period (from filing, or from the last validation)
    has run out, longest overdue first."""
    cutoff = years_before(core.clock.now(), core.policy.retention.review_years)
    async with core.db.read() as conn:
        return await tips_repo.due_for_review(conn, cutoff)


def review_due_on(tip: Tip, review_years: int) -> datetime:
    return years_after(tip.reviewed_at or tip.filed_at, review_years)


async def validate_record(core: Core, to: ReplyTo, tip_id: int, reason: str) -> Tip:
    """A supervisor's review found the record still valid: a new retention period starts."""
    reason = reason.strip()
    if not reason:
        raise UserError("Please give the reason the record stays valid.")
    now = core.clock.now()
    years = core.policy.retention.review_years
    async with core.transaction() as conn:
        before = await tips_repo.get_tip(conn, tip_id, for_update=True)
        if before is None:
            raise UserError(
                f"There is no T-{tip_id}. Check the number in {spell(to.actor, 'review-due')}."
            )
        if before.state is TipState.REJECTED and before.purged_at is None:
            # Rejected means no criminal nexus was found: such a record is purged, not kept.
            raise UserError(
                f"{before.ref} was rejected, so it is purged after "
                f"{core.policy.retention.rejected_days} days instead of being kept."
            )
        if before.purged_at is not None:
            raise UserError(
                f"{before.ref} was purged under the retention policy; there is nothing to validate."
            )
        due_on = review_due_on(before, years)
        if due_on > now:
            # Early, it would only move the next review: most likely the wrong number.
            raise UserError(
                f"{before.ref} isn't due for review until "
                f"{due_on.astimezone(core.policy.center.tz):%Y-%m-%d}; nothing was changed. "
                f"{spell(to.actor, 'review-due')} lists the records that are due."
            )
        tip = await tips_repo.mark_reviewed(conn, tip_id, now=now)
        if tip is None:
            raise UserError(
                f"{before.ref} was purged under the retention policy; there is nothing to validate."
            )
        next_review = review_due_on(tip, years)
        await append_audit(
            conn,
            at=now,
            actor=to.actor,
            action="tip.validated",
            subject=tip.ref,
            details={
                "reviewer": to.actor,
                "reason": reason,
                "previous_period_start": (before.reviewed_at or before.filed_at).isoformat(),
                "next_review": next_review.isoformat(),
            },
        )
        await reply(
            conn,
            to,
            f"{tip.ref} validated; its next review is due "
            f"{next_review.astimezone(core.policy.center.tz):%Y-%m-%d}.",
            now=now,
        )
    return tip
