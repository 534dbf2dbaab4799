"""SLA reminders for untriaged tips, driven by a clock the test moves."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.clock import ManualClock
from bot.sla import remind_overdue, reminder_message
from bot.tips import Tip, Urgency
from storage.audit_repo import load_audit
from tests.harness import ConsoleHarness, lines_for

START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def harness(db) -> tuple[ConsoleHarness, ManualClock]:
    clock = ManualClock(START)
    return ConsoleHarness(db, clock=clock), clock


async def run_reminders(h: ConsoleHarness) -> tuple[int, list[str]]:
    before = len(h.printed)
    count = await remind_overdue(h.bot.core)
    await h.bot.drain(10.0)
    return count, h.printed[before:]


def reminders(printed: list[str]) -> list[str]:
    return [line for line in printed if "⏰" in line]


@pytest.mark.parametrize(
    ("urgency", "minutes", "waited"),
    [("immediate", 15, "15 min"), ("priority", 60, "60 min"), ("routine", 1440, "24 h")],
)
async def test_reminder_comes_after_the_sla_for_the_urgency_and_not_before(
    db, urgency: str, minutes: int, waited: str
) -> None:
    h, clock = harness(db)
    await h.say(
        f"@olly #tips !tip Van idling by the depot gate | category: survl | urgency: {urgency}"
    )

    clock.advance(timedelta(minutes=minutes) - timedelta(seconds=1))
    count, out = await run_reminders(h)
    assert count == 0 and out == []

    clock.advance(timedelta(seconds=1))
    count, out = await run_reminders(h)
    assert count == 1
    expected = f"⏰ T-1 ({urgency}) has waited {waited} without triage — !claim T-1"
    assert lines_for(reminders(out), "#review") == [f"#review {expected}"]
    assert lines_for(reminders(out), "#review-night") == [f"#review-night {expected}"]
    cards = [line for line in out if "(edited) T-1 · NEW" in line]
    assert len(cards) == 2 and all("Overdue" in card for card in cards), out
    # The analysts' queue marks it too, until someone takes it.
    queue = await h.say_text("@ana #review !status")
    assert f"T-1 · {urgency} · NEW · OVERDUE · " in queue, queue
    await h.say("@ana #review !claim T-1")
    queue = await h.say_text("@ana #review !status")
    assert "T-1 · " in queue and "OVERDUE" not in queue, queue


async def test_reminder_goes_only_where_the_card_is(db) -> None:
    h, clock = harness(db)
    await h.say("@olly #tips !tip Phishing wave against water utility | category: cyber")
    clock.advance(timedelta(days=1))
    count, out = await run_reminders(h)
    assert count == 1
    assert [line.split(" ", 1)[0] for line in reminders(out)] == ["#cyber"]


async def test_reminded_once_however_often_and_however_concurrently_the_job_runs(db) -> None:
    h, clock = harness(db)
    await h.say(
        "@olly #tips !tip Van idling by the depot gate | category: survl | urgency: immediate"
    )
    await h.say("@otto #tips !tip Drone over the stadium | category: aviation | urgency: immediate")
    clock.advance(timedelta(minutes=20))

    counts = await asyncio.gather(*(remind_overdue(h.bot.core) for _ in range(3)))
    assert sum(counts) == 2
    count, _ = await run_reminders(h)
    assert count == 0

    # One reminder per tip and review channel, and one audit row per tip.
    assert len(reminders(h.printed)) == 4
    async with db.read() as conn:
        audit = [e for e in await load_audit(conn) if e.action == "tip.sla_reminder"]
    assert sorted(e.subject for e in audit) == ["T-1", "T-2"]
    assert audit[0].actor == "system:fusionbot"

    clock.advance(timedelta(days=2))  # still untriaged, but it was reminded about already
    count, out = await run_reminders(h)
    assert count == 0 and out == []


async def test_a_claimed_tip_gets_no_reminder(db) -> None:
    h, clock = harness(db)
    await h.say(
        "@olly #tips !tip Van idling by the depot gate | category: survl | urgency: immediate"
    )
    await h.say("@ana #review !claim T-1")
    clock.advance(timedelta(hours=2))
    count, out = await run_reminders(h)
    assert count == 0 and out == []


async def test_later_refreshes_keep_the_overdue_marker_until_someone_claims_it(db) -> None:
    h, clock = harness(db)
    await h.say(
        "@olly #tips !tip Van idling by the depot gate | category: survl | urgency: priority"
    )
    clock.advance(timedelta(minutes=61))
    await run_reminders(h)

    out = await h.say("@olly @bot !reply T-1 The van has no plates")
    card = next(line for line in out if line.startswith("#review (edited)"))
    assert "A (console:olly): The van has no plates" in card and "Overdue" in card
    # On a line of its own, not trailing off the end of another note.
    assert "\n    Overdue: this tip has waited longer than its SLA." in card
    # !status T-1 shows the tip as its card does, overdue included.
    status = await h.say_text("@ana #review !status T-1")
    assert "Overdue: this tip has waited longer than its SLA." in status

    out = await h.say("@ana #review !claim T-1")
    card = next(line for line in out if line.startswith("#review (edited)"))
    assert "CLAIMED" in card and "Overdue" not in card


async def test_closed_and_purged_tips_are_not_reminded_about(db) -> None:
    h, clock = harness(db)
    await h.say(
        "@olly #tips !tip Van idling by the depot gate | category: survl | urgency: immediate"
    )
    await h.say("@ana #review !claim T-1")
    await h.say("@ana #review !reject T-1 Delivery van, checked")
    clock.advance(timedelta(days=3))
    count, _ = await run_reminders(h)
    assert count == 0


def test_the_reminder_spells_the_claim_command_for_the_channels_platform() -> None:
    tip = Tip(
        id=7,
        summary="Van idling",
        category="SURVL",
        urgency=Urgency.PRIORITY,
        officer="slack:U0OFFICER",
        intake_channel="slack:C0TIPS",
        filed_at=START,
    )
    later = START + timedelta(hours=3, minutes=5)
    slack = reminder_message(tip, "slack:C0REVIEW", later).text
    matrix = reminder_message(tip, "matrix:!review:example.org", later).text
    assert slack == "⏰ T-7 (priority) has waited 3 h 5 min without triage — /fusion claim T-7"
    assert matrix.endswith("— !claim T-7")
