"""Every transition of the tip lifecycle, allowed and refused, as a table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.lifecycle import Actor, Refused, Verb, next_state
from bot.tips import Tip, TipState, Urgency

S = TipState
OFFICER = Actor("console:olly")
HOLDER = Actor("console:ana", is_analyst=True)
OTHER = Actor("console:ali", is_analyst=True)
SUPERVISOR = Actor("console:sam", is_analyst=True, is_supervisor=True)


def tip(
    state: TipState, *, claimed_by: str | None = "console:ana", officer: str = "console:olly"
) -> Tip:
    return Tip(
        id=1,
        summary="x",
        category="PHOTO",
        urgency=Urgency.ROUTINE,
        officer=officer,
        intake_channel="console:#tips",
        filed_at=datetime(2026, 1, 1, tzinfo=UTC),
        state=state,
        claimed_by=None if state is S.NEW else claimed_by,
    )


# (state, verb, actor) -> resulting state, or None when refused.
CASES = [
    (S.NEW, Verb.CLAIM, HOLDER, S.CLAIMED),
    (S.NEW, Verb.CLAIM, OFFICER, None),
    (S.NEW, Verb.ASK, HOLDER, None),
    (S.NEW, Verb.APPROVE, HOLDER, None),
    (S.NEW, Verb.REJECT, HOLDER, None),
    (S.NEW, Verb.DUPLICATE, HOLDER, None),
    (S.NEW, Verb.REPLY, OFFICER, S.NEW),
    (S.CLAIMED, Verb.CLAIM, HOLDER, None),
    (S.CLAIMED, Verb.CLAIM, OTHER, None),
    (S.CLAIMED, Verb.CLAIM, SUPERVISOR, S.CLAIMED),
    (S.CLAIMED, Verb.ASK, HOLDER, S.NEEDS_INFO),
    (S.CLAIMED, Verb.ASK, OTHER, None),
    (S.CLAIMED, Verb.APPROVE, HOLDER, S.APPROVED),
    (S.CLAIMED, Verb.APPROVE, OTHER, None),
    (S.CLAIMED, Verb.APPROVE, SUPERVISOR, S.APPROVED),
    (S.CLAIMED, Verb.REJECT, HOLDER, S.REJECTED),
    (S.CLAIMED, Verb.DUPLICATE, HOLDER, S.DUPLICATE),
    (S.CLAIMED, Verb.REPLY, OFFICER, S.CLAIMED),
    (S.CLAIMED, Verb.REPLY, OTHER, None),
    (S.NEEDS_INFO, Verb.REPLY, OFFICER, S.CLAIMED),
    (S.NEEDS_INFO, Verb.REPLY, HOLDER, None),
    (S.NEEDS_INFO, Verb.ASK, HOLDER, S.NEEDS_INFO),
    (S.NEEDS_INFO, Verb.APPROVE, HOLDER, S.APPROVED),
    (S.NEEDS_INFO, Verb.REJECT, HOLDER, S.REJECTED),
    (S.NEEDS_INFO, Verb.CLAIM, SUPERVISOR, S.NEEDS_INFO),
    *[
        (closed, verb, actor, None)
        for closed in (S.APPROVED, S.REJECTED, S.DUPLICATE)
        for verb in Verb
        for actor in (HOLDER, SUPERVISOR, OFFICER)
    ],
]


@pytest.mark.parametrize(("state", "verb", "actor", "expected"), CASES)
def test_transition(state: TipState, verb: Verb, actor: Actor, expected: TipState | None) -> None:
    if expected is None:
        with pytest.raises(Refused) as refused:
            next_state(tip(state), verb, actor)
        assert str(refused.value)  # every refusal says why
    else:
        assert next_state(tip(state), verb, actor) is expected


def test_four_eyes_officer_who_is_also_an_analyst_cannot_approve_own_tip() -> None:
    own = tip(S.CLAIMED, claimed_by="console:ana", officer="console:ana")
    with pytest.raises(Refused, match="four-eyes"):
        next_state(own, Verb.APPROVE, HOLDER)
    # ...but may still reject or ask about it.
    assert next_state(own, Verb.REJECT, HOLDER) is S.REJECTED


def test_refusals_tell_what_to_do() -> None:
    with pytest.raises(Refused, match=r"Claim it first: !claim T-1"):
        next_state(tip(S.NEW), Verb.APPROVE, HOLDER)
    with pytest.raises(Refused, match="claimed by console:ana"):
        next_state(tip(S.CLAIMED), Verb.REJECT, OTHER)


def test_purged_tip_accepts_nothing() -> None:
    purged = tip(S.REJECTED)
    purged.purged_at = datetime(2026, 2, 1, tzinfo=UTC)
    with pytest.raises(Refused, match="purged"):
        next_state(purged, Verb.REPLY, OFFICER)


@pytest.mark.parametrize(
    ("state", "phrase"),
    [(S.APPROVED, "approved"), (S.REJECTED, "rejected"), (S.DUPLICATE, "a duplicate of T-2")],
)
def test_a_closed_tip_refuses_in_a_sentence_that_reads(state: TipState, phrase: str) -> None:
    closed = tip(state)
    closed.duplicate_of = 2 if state is S.DUPLICATE else None
    with pytest.raises(Refused) as refused:
        next_state(closed, Verb.APPROVE, HOLDER)
    assert str(refused.value) == f"T-1 is already {phrase}; closed tips can't change."
    with pytest.raises(Refused) as refused:
        next_state(closed, Verb.REPLY, OFFICER)
    # New facts after the decision aren't lost: the refusal says how to send them.
    assert str(refused.value) == (
        f"T-1 is already {phrase}; no answer is needed any more. If you have something new, "
        "file it as a new tip that mentions T-1: !tip … (see T-1) | details: …"
    )
