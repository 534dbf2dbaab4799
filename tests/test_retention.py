"""Retention (28 CFR Part 23 practice): rejected tips are purged after the policy's days,
every other record comes up for review after the policy's years."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from bot.clock import ManualClock
from bot.retention import due_for_review, purge_expired, years_before
from storage.audit_repo import load_audit, verify_audit
from storage.tables import tip_notes, tips
from tests.harness import ConsoleHarness

START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
TIP = (
    "@olly #tips !tip Man photographing the substation fence | category: photo "
    "| location: 5th & Main | region: north | when: last night | details: blue sedan, MD plates"
)


def harness(db) -> tuple[ConsoleHarness, ManualClock]:
    clock = ManualClock(START)
    return ConsoleHarness(db, clock=clock), clock


async def rejected_tip(h: ConsoleHarness) -> None:
    await h.say(TIP)
    await h.say("@ana #review !claim T-1")
    await h.say("@ana #review !ask T-1 What was he carrying?")
    await h.say("@olly @bot !reply T-1 A tripod and a notebook")
    await h.say("@ana #review !reject T-1 Licensed surveyor, verified with the utility")


async def run_purge(h: ConsoleHarness) -> tuple[int, list[str]]:
    before = len(h.printed)
    count = await purge_expired(h.bot.core)
    await h.bot.drain(10.0)
    return count, h.printed[before:]


async def tip_row(db, tip_id: int = 1):
    async with db.read() as conn:
        row = (await conn.execute(select(tips).where(tips.c.id == tip_id))).one()
        notes = (await conn.execute(select(tip_notes).where(tip_notes.c.tip_id == tip_id))).all()
    return row, notes


async def words_anywhere(db, words: tuple[str, ...]) -> list[str]:
    """Every table and row that still contains any of the words."""
    from storage.tables import metadata

    found = []
    async with db.read() as conn:
        for table in metadata.sorted_tables:
            for row in await conn.execute(select(table)):
                text = json.dumps([str(v) for v in row], ensure_ascii=False).lower()
                found += [f"{table.name}: {w}" for w in words if w in text]
    return found


async def test_rejected_tip_is_purged_after_the_retention_days_and_only_once(db) -> None:
    h, clock = harness(db)
    await rejected_tip(h)
    row, notes = await tip_row(db)
    assert row.details and len(notes) == 2

    clock.advance(timedelta(days=30) - timedelta(seconds=1))
    count, out = await run_purge(h)
    assert count == 0 and out == []

    clock.advance(timedelta(seconds=1))
    count, out = await run_purge(h)
    assert count == 1

    row, notes = await tip_row(db)
    assert row.summary == ""
    assert (row.location, row.region, row.when_text, row.details, row.reason) == (None,) * 5
    assert row.purged_at == clock.now() and notes == []
    assert (row.state, row.category) == ("rejected", "PHOTO")  # the bare record stays

    cards = [line for line in out if "(edited)" in line]
    assert sorted(line.split(" ", 1)[0] for line in cards) == ["#review", "#review-night"]
    assert all("T-1 · PURGED" in card and "substation" not in card for card in cards)

    async with db.read() as conn:
        audit = await load_audit(conn, subject="T-1")
        assert (await verify_audit(conn)).ok
    purged = [e for e in audit if e.action == "tip.purged"]
    assert len(purged) == 1 and purged[0].actor == "system:fusionbot"
    assert set(purged[0].details) == {"category", "filed_at", "decided_at", "rejected_days"}
    recorded = json.dumps(purged[0].details)
    assert "substation" not in recorded and "surveyor" not in recorded
    # Nothing the officer or the analysts wrote survives anywhere in the database: not in
    # the audit log, not in the outbox's copies of cards and direct messages.
    assert await words_anywhere(db, ("substation", "tripod", "surveyor", "sedan")) == []

    for who, where in (("@ana", "#review"), ("@olly", "@bot")):
        answer = await h.say_text(f"{who} {where} !status T-1")
        assert "purged under the retention policy" in answer
        assert "substation" not in answer and "tripod" not in answer

    out = await h.say("@ana #review !claim T-1")
    assert "was purged" in out[0]

    clock.advance(timedelta(days=400))
    count, out = await run_purge(h)
    assert count == 0 and out == []


async def test_concurrent_purges_do_the_work_once(db) -> None:
    h, clock = harness(db)
    await rejected_tip(h)
    clock.advance(timedelta(days=31))
    counts = await asyncio.gather(*(purge_expired(h.bot.core) for _ in range(3)))
    assert sum(counts) == 1
    async with db.read() as conn:
        audit = await load_audit(conn)
    assert [e.subject for e in audit if e.action == "tip.purged"] == ["T-1"]


async def test_only_rejected_tips_are_ever_purged(db) -> None:
    h, clock = harness(db)
    await h.say(TIP)  # T-1 stays new
    await h.say("@olly #tips !tip Van idling by the depot gate | category: survl")  # T-2 claimed
    await h.say("@ana #review !claim T-2")
    await h.say("@olly #tips !tip Same man at the substation again | category: photo")  # T-3 dup
    await h.say("@ana #review !claim T-3")
    await h.say("@ana #review !dup T-3 T-1")
    await h.say("@olly #tips !tip Drone over the stadium | category: aviation")  # T-4 approved
    await h.say("@ali #review !claim T-4")
    await h.say("@ali #review !approve T-4 to:metro-pd confirm")

    clock.advance(timedelta(days=3650))
    count, _ = await run_purge(h)
    assert count == 0
    for tip_id in (1, 2, 3, 4):
        row, _ = await tip_row(db, tip_id)
        assert row.purged_at is None and row.summary


async def test_records_come_up_for_review_and_validation_starts_a_new_period(db) -> None:
    h, clock = harness(db)
    await h.say(TIP)
    clock.advance(timedelta(days=1))
    await h.say("@otto #tips !tip Van idling by the depot gate | category: survl")
    await h.say("@olly #tips !tip Man asked about the guard rota | category: elicit")
    await h.say("@ana #review !claim T-3")
    await h.say("@ana #review !reject T-3 Lost tourist")
    assert (await run_purge(h))[0] == 0  # not yet

    clock.set(years_before(START, -5) - timedelta(minutes=1))
    assert await due_for_review(h.bot.core) == []
    assert "No record is due" in await h.say_text("@sam #review !review-due")
    # Not due yet: most likely a wrong number, so nothing changes.
    answer = await h.say_text("@sam #review !validate T-2 Still needed")
    assert "T-2 isn't due for review until 2031-03-03; nothing was changed." in answer

    clock.set(years_before(START, -5) + timedelta(days=1))
    assert [t.ref for t in await due_for_review(h.bot.core)] == ["T-1", "T-2", "T-3"]
    assert (await run_purge(h))[0] == 1  # T-3 was rejected long ago: purged, not reviewed
    listing = await h.say_text("@sam #review !review-due")
    assert "Records due for review (2)" in listing
    assert "T-1 · new · PHOTO" in listing and "T-2 · new · SURVL" in listing
    assert "T-3" not in listing and "!validate T-1 <reason>" in listing  # the first listed

    answer = await h.say_text("@sam #review !validate T-1 Open investigation 26-114 relies on it")
    assert "T-1 validated; its next review is due 2036-03-03" in answer
    row, _ = await tip_row(db, 1)
    assert row.reviewed_at == clock.now()
    async with db.read() as conn:
        validated = [
            e for e in await load_audit(conn, subject="T-1") if e.action == "tip.validated"
        ]
    assert len(validated) == 1 and validated[0].actor == "console:sam"
    assert validated[0].details["reviewer"] == "console:sam"
    assert validated[0].details["reason"] == "Open investigation 26-114 relies on it"

    assert [t.ref for t in await due_for_review(h.bot.core)] == ["T-2"]
    listing = await h.say_text("@sam #review !review-due")
    assert "Records due for review (1)" in listing
    assert "T-2 · new" in listing and "T-1 · new" not in listing

    # The new period runs from the validation, not from the filing.
    clock.set(years_before(clock.now(), -5) - timedelta(minutes=1))
    assert [t.ref for t in await due_for_review(h.bot.core)] == ["T-2"]
    clock.advance(timedelta(minutes=1))
    assert [t.ref for t in await due_for_review(h.bot.core)] == ["T-2", "T-1"]

    answer = await h.say_text("@sam #review !validate T-3 Keep it")
    assert "T-3 was purged" in answer
    answer = await h.say_text("@sam #review !validate T-1")
    assert "Please add the reason" in answer
    answer = await h.say_text("@sam #review !validate T-99 Keep it")
    assert "There is no T-99" in answer


async def test_review_commands_are_for_supervisors_only(db) -> None:
    h, clock = harness(db)
    await h.say(TIP)
    clock.set(years_before(START, -6))
    for who, where in (("@ana", "#review"), ("@olly", "#tips"), ("@sam", "#review")):
        listing = await h.say_text(f"{who} {where} !review-due")
        answer = await h.say_text(f"{who} {where} !validate T-1 Still needed")
        if who == "@sam":
            assert "Records due for review (1)" in listing and "validated" in answer
        else:
            assert "Only a supervisor may do that." in listing
            assert "Only a supervisor may do that." in answer
    async with db.read() as conn:
        validated = [e for e in await load_audit(conn) if e.action == "tip.validated"]
    assert [e.actor for e in validated] == ["console:sam"]
    assert "!review-due" in await h.say_text("@sam #review !help")
    assert "!review-due" not in await h.say_text("@ana #review !help")


async def test_a_rejected_record_is_purged_not_validated(db) -> None:
    h, _ = harness(db)
    await rejected_tip(h)
    answer = await h.say_text("@sam #review !validate T-1 Keep it anyway")
    assert "T-1 was rejected, so it is purged after 30 days" in answer
    row, _ = await tip_row(db)
    assert row.reviewed_at is None
