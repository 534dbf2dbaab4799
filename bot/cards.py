"""What analysts and officers see: review cards, receipts, status lines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

from bot.categories import CATEGORIES, PART_B_NOTE
from bot.messages import Button, Message, MessageField
from bot.similarity import Similar
from bot.tips import Tip, TipNote, TipState, Urgency

STATE_BADGE = {
    TipState.NEW: "NEW",
    TipState.CLAIMED: "CLAIMED",
    TipState.NEEDS_INFO: "NEEDS INFO",
    TipState.APPROVED: "APPROVED",
    TipState.REJECTED: "REJECTED",
    TipState.DUPLICATE: "DUPLICATE",
}


class TipLine(NamedTuple):
    """What a status line shows of a tip. The analysts' queue and an officer's list load
    only this (a tuple per row), not whole tips: each line's other columns, and their
    times parsed, cost more than the line (``!status`` for a queue of 20: see
    storage.tips_repo.tips_in_queue)."""

    id: int
    summary: str
    state: TipState
    claimed_by: str | None
    decided_by: str | None
    duplicate_of: int | None
    filed_at: datetime
    purged_at: datetime | None
    urgency: Urgency
    sla_reminded_at: datetime | None

    @property
    def ref(self) -> str:
        return f"T-{self.id}"


def local_time(when: datetime, tz: ZoneInfo) -> str:
    # Through UTC: astimezone() to the zone a time already carries changes nothing, so a
    # wall time the clocks skipped (02:30 on the spring-forward day, as APScheduler and a
    # bare at: give it) would be shown as "02:30 EST" instead of the 03:30 EDT it is.
    local = when.astimezone(UTC).astimezone(tz)
    # What strftime("%Y-%m-%d %H:%M %Z") gives, formatted directly (in 60% of its time:
    # the analysts' queue formats 20 of these per `!status`).
    return (
        f"{local.year}-{local.month:02d}-{local.day:02d} "
        f"{local.hour:02d}:{local.minute:02d} {local.tzname() or ''}"
    )


def card_key(tip_id: int) -> str:
    return f"card:{tip_id}"


def state_line(tip: Tip | TipLine) -> str:
    line = STATE_BADGE[tip.state]
    if tip.state in (TipState.CLAIMED, TipState.NEEDS_INFO) and tip.claimed_by:
        line += f" · {tip.claimed_by}"
    if tip.state is TipState.NEEDS_INFO:
        line += " · waiting for the officer's answer"
    if tip.state.closed and tip.decided_by:
        line += f" · by {tip.decided_by}"
    if tip.state is TipState.DUPLICATE and tip.duplicate_of:
        line += f" of T-{tip.duplicate_of}"
    return line


def tip_fields(tip: Tip, tz: ZoneInfo) -> list[MessageField]:
    """What a tip reports and where it stands: the review card's fields, and those of
    ``!status T-1``, so the two can't drift apart. Not for a purged tip (no content)."""
    category = CATEGORIES[tip.category]
    fields = [
        MessageField(label="State", value=state_line(tip)),
        MessageField(label="Category", value=f"{category.code} — {category.label}"),
        MessageField(label="Urgency", value=tip.urgency.value),
    ]
    for label, value in (
        ("Location", tip.location),
        ("Region", tip.region),
        ("When", tip.when),
        ("Details", tip.details),
    ):
        if value:
            fields.append(MessageField(label=label, value=value))
    fields.append(
        MessageField(label="Filed", value=f"{local_time(tip.filed_at, tz)} by {tip.officer}")
    )
    return fields


OVERDUE_NOTE = "Overdue: this tip has waited longer than its SLA."


def outcome_field(tip: Tip) -> MessageField | None:
    """How the tip was closed, on its card and in ``!status T-1`` alike: a rejection's
    reason is the analyst's; what an approval became is an outcome."""
    if not tip.reason:
        return None
    label = "Reason" if tip.state is TipState.REJECTED else "Outcome"
    return MessageField(label=label, value=tip.reason)


def review_card(
    tip: Tip, notes: list[TipNote], similar: list[Similar], tz: ZoneInfo, *, overdue: bool = False
) -> Message:
    category = CATEGORIES[tip.category]
    if tip.purged_at is not None:
        return Message(
            header=f"{tip.ref} · PURGED",
            text="Content removed under the retention policy (28 CFR Part 23).",
        )
    fields = tip_fields(tip, tz)
    for note in notes:
        who = "Q" if note.kind == "ask" else "A"
        fields.append(MessageField(label=f"{who} ({note.actor})", value=note.text))
    if (outcome := outcome_field(tip)) is not None:
        fields.append(outcome)
    if similar:
        fields.append(
            MessageField(
                label="Similar open tips",
                value="; ".join(f"{s.tip.ref} ({s.why}): {_short(s.tip.summary)}" for s in similar),
            )
        )
    footer_parts = []
    if category.part_b and not tip.state.closed:
        footer_parts.append(PART_B_NOTE)
    # Once reminded about, a still-untriaged tip stays marked on every later refresh.
    overdue = overdue or tip.sla_reminded_at is not None
    if overdue and tip.state is TipState.NEW:
        footer_parts.append(OVERDUE_NOTE)
    return Message(
        header=f"{tip.ref} · {STATE_BADGE[tip.state]} · {tip.urgency.value} · {category.code}",
        text=tip.summary,
        fields=fields,
        # Each note on a line of its own: an overdue warning must not trail off the end of
        # the Part B paragraph.
        footer="\n".join(footer_parts) or None,
        buttons=card_buttons(tip),
    )


def card_buttons(tip: Tip) -> list[Button]:
    # Open and held by nobody: new, or given back while waiting for the officer's answer.
    if not tip.state.closed and tip.claimed_by is None:
        return [Button(label="Claim", command=f"claim {tip.ref}", style="primary")]
    if tip.state in (TipState.CLAIMED, TipState.NEEDS_INFO):
        return [
            Button(label="Ask", command=f"ask {tip.ref}", needs_input=True),
            Button(
                label="Approve", command=f"approve {tip.ref}", style="primary", needs_input=True
            ),
            Button(label="Reject", command=f"reject {tip.ref}", style="danger", needs_input=True),
            Button(label="Duplicate", command=f"dup {tip.ref}", needs_input=True),
        ]
    return []


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_line(tip: Tip | TipLine, tz: ZoneInfo) -> str:
    if tip.purged_at is not None:
        return f"{tip.ref} · purged under the retention policy"
    # Still untriaged after its SLA's reminder: the card says so, and so does its line.
    overdue = " · OVERDUE" if tip.state is TipState.NEW and tip.sla_reminded_at else ""
    return (
        f"{tip.ref} · {tip.urgency.value} · {state_line(tip)}{overdue} · "
        f"{local_time(tip.filed_at, tz)} · {_short(tip.summary)}"
    )
