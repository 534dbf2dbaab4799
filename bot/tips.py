"""Tips as the core sees them: plain data, no storage, no platform."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Urgency(StrEnum):
    IMMEDIATE = "immediate"
    PRIORITY = "priority"
    ROUTINE = "routine"


class TipState(StrEnum):
    NEW = "new"
    CLAIMED = "claimed"
    NEEDS_INFO = "needs_info"
    APPROVED = "approved"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"

    @property
    def closed(self) -> bool:
        return self in (TipState.APPROVED, TipState.REJECTED, TipState.DUPLICATE)

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")

    @property
    def in_a_sentence(self) -> str:
        """The state after "is" or "is already": "T-4 is already a duplicate"."""
        return {
            TipState.NEEDS_INFO: "waiting for the officer's answer",
            TipState.DUPLICATE: "a duplicate",
        }.get(self, self.label)


@dataclass
class Tip:
    id: int
    summary: str
    category: str
    urgency: Urgency
    officer: str
    intake_channel: str
    filed_at: datetime
    state: TipState = TipState.NEW
    location: str | None = None
    region: str | None = None
    when: str | None = None
    details: str | None = None
    claimed_by: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    duplicate_of: int | None = None
    purged_at: datetime | None = None
    # When the SLA reminder for this untriaged tip went out (at most once per tip).
    sla_reminded_at: datetime | None = None
    # The last review that validated the record (28 CFR 23): a new retention period starts.
    reviewed_at: datetime | None = None
    version: int = 1

    @property
    def ref(self) -> str:
        return f"T-{self.id}"


@dataclass(frozen=True)
class TipNote:
    """A question from an analyst or an answer from the officer, shown on the card."""

    tip_id: int
    kind: str  # "ask" | "reply"
    actor: str
    text: str
    at: datetime


@dataclass
class TipDraft:
    """What an officer filed, validated, before it has an id."""

    summary: str
    category: str
    urgency: Urgency = Urgency.ROUTINE
    location: str | None = None
    region: str | None = None
    when: str | None = None
    details: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


# "#T-12" as a chat client may turn it into, "T-12:" or "T-12," as typed before the rest
# of a sentence ("!reply T-1: a tripod").
_TIP_REF = re.compile(r"^#?(?:T-?)?(\d{1,9})[:,;.]?$", re.IGNORECASE)


def parse_tip_ref(text: str) -> int | None:
    """``T-12``, ``t12``, ``12``, ``#T-12`` or ``T-12:`` -> 12; anything else -> None."""
    match = _TIP_REF.match(text.strip())
    return int(match.group(1)) if match else None
