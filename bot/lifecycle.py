"""The tip lifecycle: who may do what, from which state. Pure; no I/O.

new -> claimed -> (needs_info <-> claimed) -> approved | rejected | duplicate
An open tip held by someone can be given back (unclaim): claimed -> new; a tip waiting
for the officer's answer keeps waiting, held by nobody, until someone claims it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.addresses import spell
from bot.errors import UserError
from bot.tips import Tip, TipState


class Verb(StrEnum):
    CLAIM = "claim"
    ASK = "ask"
    REPLY = "reply"
    APPROVE = "approve"
    REJECT = "reject"
    DUPLICATE = "dup"
    UNCLAIM = "unclaim"


@dataclass(frozen=True)
class Actor:
    address: str
    is_analyst: bool = False
    is_supervisor: bool = False

    @property
    def may_triage(self) -> bool:
        return self.is_analyst or self.is_supervisor


class Refused(UserError):
    """A transition that must not happen; the message is shown to the person as is."""


def next_state(tip: Tip, verb: Verb, actor: Actor) -> TipState:
    """The state the tip moves to, or :class:`Refused` saying why not and what to do."""
    if tip.purged_at is not None:
        raise Refused(
            f"{tip.ref} was purged under the retention policy; nothing is left to act on."
        )
    if verb is Verb.REPLY:
        return _reply(tip, actor)
    if not actor.may_triage:
        raise Refused("Only analysts and supervisors may triage tips.")
    if tip.state.closed:
        raise Refused(f"{tip.ref} is already {_closed_as(tip)}; closed tips can't change.")
    if verb is Verb.CLAIM:
        return _claim(tip, actor)
    if verb is Verb.UNCLAIM and tip.claimed_by is None:
        raise Refused(f"Nobody holds {tip.ref}; it is in the queue already.")
    if tip.claimed_by is None:
        raise Refused(
            f"{tip.ref} is not claimed yet. Claim it first: {spell(actor.address, 'claim')} "
            f"{tip.ref}"
        )
    _check_holder(tip, actor)
    if verb is Verb.UNCLAIM:
        # A question already asked stays open: the officer's answer must still be awaited,
        # shown as awaited, and reach whoever holds the tip next.
        return tip.state if tip.state is TipState.NEEDS_INFO else TipState.NEW
    if verb is Verb.ASK:
        return TipState.NEEDS_INFO
    if verb is Verb.APPROVE and actor.address == tip.officer:
        raise Refused(
            f"You filed {tip.ref}, so someone else must approve it (four-eyes rule): a "
            f"supervisor can take it over with {spell(actor.address, 'claim')} {tip.ref}."
        )
    return {
        Verb.APPROVE: TipState.APPROVED,
        Verb.REJECT: TipState.REJECTED,
        Verb.DUPLICATE: TipState.DUPLICATE,
    }[verb]


def _claim(tip: Tip, actor: Actor) -> TipState:
    if tip.claimed_by is None:  # new, or given back while waiting for the officer's answer
        return TipState.CLAIMED if tip.state is TipState.NEW else tip.state
    if tip.claimed_by == actor.address:
        raise Refused(f"You already hold {tip.ref}.")
    if not actor.is_supervisor:
        raise Refused(
            f"{tip.ref} is claimed by {tip.claimed_by}. Ask them to see it through or give it "
            f"back ({spell(tip.claimed_by or actor.address, 'unclaim')} {tip.ref}), or a "
            f"supervisor to take it over ({spell(actor.address, 'claim')} {tip.ref} from a "
            "supervisor does)."
        )
    # A supervisor takes over; the tip keeps its state (a pending question stays pending).
    return tip.state


def _check_holder(tip: Tip, actor: Actor) -> None:
    if tip.claimed_by != actor.address and not actor.is_supervisor:
        raise Refused(
            f"{tip.ref} is claimed by {tip.claimed_by}; only they or a supervisor may act on it."
        )


def _reply(tip: Tip, actor: Actor) -> TipState:
    if actor.address != tip.officer:
        raise Refused(f"Only the officer who filed {tip.ref} can reply to questions about it.")
    if tip.state.closed:
        raise Refused(
            f"{tip.ref} is already {_closed_as(tip)}; no answer is needed any more. If you "
            f"have something new, file it as a new tip that mentions {tip.ref}: "
            f"{spell(actor.address, 'tip')} … (see {tip.ref}) | details: …"
        )
    # An answer puts a tip that waited for information back in the analyst's hands;
    # extra facts on any other open tip are simply added to it.
    if tip.state is TipState.NEEDS_INFO:
        return TipState.CLAIMED if tip.claimed_by else TipState.NEW
    return tip.state


def _closed_as(tip: Tip) -> str:
    """What a closed tip became, as a phrase: approved, rejected, a duplicate of T-2."""
    if tip.state is TipState.DUPLICATE and tip.duplicate_of is not None:
        return f"{tip.state.in_a_sentence} of T-{tip.duplicate_of}"
    return tip.state.in_a_sentence
