"""Analysts working a tip: every transition checked, audited, and shown on the card."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from bot import metrics
from bot.addresses import spell
from bot.card_render import refresh_card
from bot.core import Core
from bot.errors import UserError
from bot.lifecycle import Actor, Verb, next_state
from bot.replies import ReplyTo, direct_message, reply
from bot.tips import Tip, TipNote, TipState
from storage import tips_repo
from storage.audit_repo import append_audit


@dataclass(frozen=True)
class Triage:
    """One triage command, already parsed."""

    tip_id: int
    verb: Verb
    text: str | None = None
    other_id: int | None = None


def actor_for(core: Core, address: str) -> Actor:
    policy = core.policy
    return Actor(
        address=address,
        is_analyst=policy.is_analyst(address),
        is_supervisor=policy.is_supervisor(address),
    )


async def load_tip(conn: AsyncConnection, tip_id: int, *, for_update: bool = False) -> Tip:
    tip = await tips_repo.get_tip(conn, tip_id, for_update=for_update)
    if tip is None:
        raise UserError(
            f"There is no T-{tip_id}. Check the number on the card or in your status list."
        )
    return tip


async def triage(core: Core, to: ReplyTo, command: Triage) -> Tip:
    """Apply one transition. Raises UserError (nothing written) when it isn't allowed."""
    if command.verb is Verb.APPROVE:
        # Approving releases an alert, in the same transaction: bot.alert_release does both.
        raise ValueError("approve a tip through bot.alert_release.release")
    now = core.clock.now()
    actor = actor_for(core, to.actor)
    async with core.transaction() as conn:
        tip = await load_tip(conn, command.tip_id, for_update=True)
        new_state = next_state(tip, command.verb, actor)
        previous = tip.state
        details: dict[str, object] = {"from": previous.value, "to": new_state.value}
        tip.state = new_state

        if command.verb is Verb.CLAIM:
            if tip.claimed_by and tip.claimed_by != actor.address:
                details["took_over_from"] = tip.claimed_by
                # Whoever held it must not go on working it (or wait for an answer that
                # now goes to the new holder) without knowing.
                await tell_about(
                    conn,
                    tip,
                    tip.claimed_by,
                    f"{actor.address} took over {tip.ref} from you; the officer's answers "
                    "go to them now.",
                    now,
                )
            tip.claimed_by = actor.address
            confirmation = f"You hold {tip.ref} now."
        elif command.verb is Verb.UNCLAIM:
            holder = tip.claimed_by
            details["holder"] = holder
            tip.claimed_by = None
            confirmation = f"{tip.ref} is back in the queue for any analyst to claim."
            if previous is TipState.NEEDS_INFO:
                confirmation += (
                    " Your question to the officer stays open: the answer goes to whoever "
                    "claims it next, and onto the card."
                )
            if holder and holder != actor.address:
                await tell_about(
                    conn,
                    tip,
                    holder,
                    f"{actor.address} gave {tip.ref} back to the queue; you no longer hold it.",
                    now,
                )
        elif command.verb is Verb.ASK:
            question = _required(
                command.text, f"{spell(to.actor, 'ask')} {tip.ref} <your question>"
            )
            await tips_repo.add_note(conn, TipNote(tip.id, "ask", actor.address, question, now))
            await tell_about(
                conn,
                tip,
                tip.officer,
                f"{actor.address} asks about your tip {tip.ref} ({_short(tip.summary)}): "
                f"{question}\nAnswer with: {spell(tip.officer, 'reply')} {tip.ref} <your answer>",
                now,
            )
            # The audit row can't be purged with the tip: it records that, not what.
            details["chars"] = len(question)
            confirmation = (
                f"Asked the officer about {tip.ref}; the card shows the answer when it comes."
            )
        elif command.verb is Verb.REPLY:
            answer = _required(command.text, f"{spell(to.actor, 'reply')} {tip.ref} <your answer>")
            await tips_repo.add_note(conn, TipNote(tip.id, "reply", actor.address, answer, now))
            details["chars"] = len(answer)
            confirmation = f"Thanks — your answer was added to {tip.ref}."
            if tip.claimed_by and previous is TipState.NEEDS_INFO:
                await tell_about(
                    conn,
                    tip,
                    tip.claimed_by,
                    f"The officer answered on {tip.ref}: {answer}",
                    now,
                )
        elif command.verb is Verb.REJECT:
            tip.reason = _required(command.text, f"{spell(to.actor, 'reject')} {tip.ref} <reason>")
            decide(tip, actor, now)
            details["chars"] = len(tip.reason)
            confirmation = f"{tip.ref} rejected."
            await tell_about(
                conn,
                tip,
                tip.officer,
                f"Your tip {tip.ref} was closed without action: {tip.reason}",
                now,
            )
        else:  # duplicate
            original = await _original(conn, tip, command.other_id, usage=spell(to.actor, "dup"))
            tip.duplicate_of = original.id
            tip.reason = f"duplicate of {original.ref}"
            decide(tip, actor, now)
            details["duplicate_of"] = original.ref
            confirmation = f"{tip.ref} marked as a duplicate of {original.ref}."
            merged = (
                f"Your tip {tip.ref} was merged into {original.ref}, which covers the same activity"
            )
            if original.state is TipState.REJECTED:
                # "Merged" alone would read as if the report went on being worked.
                merged += ", reviewed earlier and closed without action"
            await tell_about(conn, tip, tip.officer, merged + ".", now)

        await record_transition(core, conn, tip, actor, command.verb, details, now=now)
        await reply(conn, to, confirmation, now=now)
    return tip


async def record_transition(
    core: Core,
    conn: AsyncConnection,
    tip: Tip,
    actor: Actor,
    verb: Verb,
    details: dict[str, object],
    *,
    now: datetime,
) -> None:
    """Save a tip whose state changed, audit the change and edit its card in place."""
    await tips_repo.save_tip(conn, tip, now=now)
    await append_audit(
        conn,
        at=now,
        actor=actor.address,
        action=f"tip.{_action_name(verb)}",
        subject=tip.ref,
        details=details,
    )
    await refresh_card(core, conn, tip)
    if tip.state.closed and tip.decided_at is not None:
        elapsed = (tip.decided_at - tip.filed_at).total_seconds()
        metrics.TRIAGE_SECONDS.labels(tip.state.value).observe(max(elapsed, 0.0))


def _required(text: str | None, usage: str) -> str:
    if not text or not text.strip():
        raise UserError(f"Please add the text. Usage: {usage}")
    return text.strip()


def decide(tip: Tip, actor: Actor, now: datetime) -> None:
    tip.decided_by = actor.address
    tip.decided_at = now


async def _original(conn: AsyncConnection, tip: Tip, other_id: int | None, *, usage: str) -> Tip:
    if other_id is None:
        raise UserError(
            f"Which tip does {tip.ref} duplicate? Usage: {usage} {tip.ref} T-<original>"
        )
    if other_id == tip.id:
        raise UserError(f"{tip.ref} can't be a duplicate of itself.")
    original = await load_tip(conn, other_id)
    # Point at the root, so chains of duplicates never form.
    seen = {tip.id}
    while original.state is TipState.DUPLICATE and original.duplicate_of:
        if original.id in seen:
            break
        seen.add(original.id)
        original = await load_tip(conn, original.duplicate_of)
    if original.id == tip.id:
        raise UserError(f"{tip.ref} is itself the original of T-{other_id}.")
    if original.purged_at is not None:
        raise UserError(f"{original.ref} was purged; mark the duplicate against a live tip.")
    return original


async def tell_about(
    conn: AsyncConnection, tip: Tip, person: str, text: str, now: datetime
) -> None:
    """A direct message about the tip, kept under its key (a purge finds what quoted it)."""
    await direct_message(conn, person, text, now=now, about=tip_messages_key(tip.id))


def tip_messages_key(tip_id: int) -> str:
    """Direct messages that quote a tip (questions, answers, outcomes)."""
    return f"tip:{tip_id}"


def _action_name(verb: Verb) -> str:
    return {
        Verb.CLAIM: "claimed",
        Verb.ASK: "asked",
        Verb.REPLY: "answered",
        Verb.APPROVE: "approved",
        Verb.REJECT: "rejected",
        Verb.DUPLICATE: "duplicate",
        Verb.UNCLAIM: "unclaimed",
    }[verb]


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
