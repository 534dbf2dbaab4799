"""Partners rate alerts they received; the officer who filed the tip hears about it; anyone
else learns nothing, not even whether the alert exists."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.clock import ManualClock
from bot.digests import send_digests
from storage.audit_repo import load_audit
from storage.db import Database
from storage.tables import alert_feedback
from tests.harness import ConsoleHarness, lines_for
from tests.test_alerts import START, TIP, alert_policy

NOT_RECEIVED = "You can give feedback only on alerts your organisation received."


@pytest.fixture
async def released(db: Database) -> ConsoleHarness:
    """A-1 at TLP:AMBER in metro-pd's and state-police's channels; not in transit's."""
    h = ConsoleHarness(db, policy=alert_policy(), clock=ManualClock(START))
    await h.say(TIP)
    await h.say("@ana #review !claim T-1")
    await h.say("@sam #review !approve T-1 confirm title: Substation surveillance")
    return h


async def stored(db: Database) -> list[tuple[object, ...]]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(
                alert_feedback.c.alert_id,
                alert_feedback.c.actor,
                alert_feedback.c.channel,
                alert_feedback.c.partner_id,
                alert_feedback.c.useful,
                alert_feedback.c.comment,
            ).order_by(alert_feedback.c.id)
        )
        return [tuple(r) for r in rows]


async def test_feedback_from_a_receiving_channel_is_stored_and_the_officer_told(
    released: ConsoleHarness,
) -> None:
    out = await released.say("@pat #metro-pd !feedback A-1 useful we doubled patrols there")

    thanks = lines_for(out, "@pat")
    assert len(thanks) == 1 and "Thank you — your feedback on A-1 reached" in thanks[0]
    told = lines_for(out, "@olly")
    assert told == [
        "@olly A partner (Metro Police Department) found your tip T-1 (alert A-1) useful: "
        "we doubled patrols there"
    ]
    assert not lines_for(out, "#metro-pd")  # the thanks is for the person, not the channel

    db = released.bot.db
    assert await stored(db) == [
        (1, "console:pat", "console:#metro-pd", "metro-pd", True, "we doubled patrols there")
    ]
    async with db.read() as conn:
        entry = (await load_audit(conn))[-1]
    assert entry.action == "alert.feedback" and entry.subject == "A-1"
    assert entry.actor == "console:pat"


async def test_not_useful_without_a_comment_from_an_internal_channel(
    released: ConsoleHarness,
) -> None:
    out = await released.say("@sue #state-police-intel !feedback A-1 not-useful")
    assert lines_for(out, "@olly") == [
        "@olly A partner (State Police Intelligence Unit) did not find your tip T-1 "
        "(alert A-1) useful."
    ]
    assert await stored(released.bot.db) == [
        (1, "console:sue", "console:#state-police-intel", "state-police", False, None)
    ]


@pytest.mark.parametrize(
    ("where", "command"),
    [
        ("#transit", "!feedback A-1 useful"),  # a partner the alert did not reach
        ("#review", "!feedback A-1 useful"),  # the center's own channel
        ("#tips", "!feedback A-1 useful"),
        ("@bot", "!feedback A-1 useful"),  # a DM from someone who got no copy
        ("#metro-pd", "!feedback A-9 useful"),  # no such alert: the same answer
        ("#transit", "!feedback A-9 useful"),
    ],
)
async def test_feedback_from_elsewhere_is_refused_and_reveals_nothing(
    released: ConsoleHarness, where: str, command: str
) -> None:
    db = released.bot.db
    out = await released.say(f"@tom {where} {command}")
    assert len(out) == 1 and out[0] == f"@tom {NOT_RECEIVED}"
    assert await stored(db) == []
    async with db.read() as conn:
        assert "alert.feedback" not in [e.action for e in await load_audit(conn)]


async def test_red_feedback_only_by_direct_message_from_a_recipient(db: Database) -> None:
    h = ConsoleHarness(db, policy=alert_policy(), clock=ManualClock(START))
    await h.say(TIP)
    await h.say("@ana #review !claim T-1")
    await h.say("@sam #review !approve T-1 tlp:red confirm")

    # In a channel the comment would show a RED alert's subject to everyone there.
    out = await h.say("@trooper #state-police !feedback A-1 useful")
    assert out == [f"@trooper {NOT_RECEIVED}"]
    out = await h.say("@chief @bot !feedback A-1 useful")  # named, but not cleared for RED
    assert out == [f"@chief {NOT_RECEIVED}"]

    out = await h.say("@trooper @bot !feedback A-1 👍 matches the plate we hold")
    assert lines_for(out, "@trooper") == [
        "@trooper Thank you — your feedback on A-1 reached the fusion center and the officer "
        "who reported it (your comment stays with the center: the alert is TLP:RED)."
    ]
    # The officer is not a recipient of a RED alert: the verdict reaches them, the comment
    # (which may quote the alert) doesn't.
    assert lines_for(out, "@olly") == [
        "@olly A partner (State Police Intelligence Unit) found your tip T-1 (alert A-1) useful."
    ]
    assert await stored(db) == [
        (1, "console:trooper", "console:trooper", "state-police", True, "matches the plate we hold")
    ]


SYNONYMS = [
    ("useful", True, None),
    ("Useful, saved us time", True, "saved us time"),
    ("yes", True, None),
    ("👍", True, None),
    ("👍🏽 nice", True, "nice"),
    (":+1:", True, None),
    ("not-useful", False, None),
    ("notuseful old news", False, "old news"),
    ("not useful old news", False, "old news"),
    ("NOT USEFUL", False, None),
    ("no", False, None),
    ("👎", False, None),
]


@pytest.mark.parametrize(("said", "useful", "comment"), SYNONYMS, ids=[s[0] for s in SYNONYMS])
async def test_verdict_synonyms(
    released: ConsoleHarness, said: str, useful: bool, comment: str | None
) -> None:
    out = await released.say(f"@pat #metro-pd !feedback A-1 {said}")
    assert "Thank you" in lines_for(out, "@pat")[0], out
    rows = await stored(released.bot.db)
    assert [(r[4], r[5]) for r in rows] == [(useful, comment)]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("!feedback A-1 maybe", "“maybe” is not an answer I know. Say useful or not-useful"),
        ("!feedback A-1 not sure", "“not” is not an answer I know"),
        ("!feedback A-1", "Was it useful? Usage: !feedback A-1 useful|not-useful [comment]"),
        ("!feedback", "Which alert?"),
        ("!feedback T-1 useful", "is not an alert id"),
        ("!feedback A-1 useful " + "x" * 1001, "Please keep the comment under 1,000 characters"),
    ],
)
async def test_bad_feedback_gets_a_clear_error(
    released: ConsoleHarness, command: str, expected: str
) -> None:
    out = await released.say(f"@pat #metro-pd {command}")
    assert len(out) == 1 and out[0].startswith("@pat ") and expected in out[0], out
    assert await stored(released.bot.db) == []


async def test_alert_shows_feedback_counts(released: ConsoleHarness) -> None:
    log = (await released.say("@sam #review !alert A-1"))[0]
    assert "Feedback: none yet" in log

    await released.say("@pat #metro-pd !feedback A-1 no")
    await released.say("@pat #metro-pd !feedback A-1 useful after all")  # changed their mind
    await released.say("@sue #state-police !feedback A-1 not useful")
    log = (await released.say("@sam #review !alert A-1"))[0]
    assert "Feedback: 1 useful, 1 not useful (2 people, each by their latest answer)" in log
    # Every answer stays listed; one its author changed says so, so the list adds up.
    assert "metro-pd (console:pat) not useful, 2026-11-25 10:00 EST (changed later)" in log
    assert "metro-pd (console:pat) useful, 2026-11-25 10:00 EST: after all\n" in log
    assert "state-police (console:sue) not useful" in log


async def test_feedback_on_a_retracted_alert_is_declined(released: ConsoleHarness) -> None:
    await released.say("@sam #review !retract A-1 Source recanted")
    out = await released.say("@pat #metro-pd !feedback A-1 useful")
    assert out == ["@pat A-1 was retracted, so there is nothing to rate. Thank you all the same."]
    out = await released.say("@tom #transit !feedback A-1 useful")
    assert out == [f"@tom {NOT_RECEIVED}"]
    assert await stored(released.bot.db) == []


async def test_a_partner_that_got_it_in_a_digest_may_answer(db: Database) -> None:
    clock = ManualClock(START)
    h = ConsoleHarness(db, policy=alert_policy(), clock=clock)
    await h.say(TIP)
    await h.say("@ana #review !claim T-1")
    await h.say("@ana #review !approve T-1 tlp:green to:transit confirm")
    # Queued for transit's digest: not received yet.
    assert await h.say("@tina #transit !feedback A-1 useful") == [f"@tina {NOT_RECEIVED}"]

    clock.advance(timedelta(days=1))  # past transit's 07:00 digest
    await send_digests(h.bot.core)
    await h.bot.drain(10.0)
    out = await h.say("@tina #transit !feedback A-1 useful")
    assert "Thank you" in lines_for(out, "@tina")[0]
    assert any("Regional Transit Authority) found your tip T-1" in line for line in out)
    assert [r[3] for r in await stored(db)] == ["transit"]


async def test_partner_copies_invite_feedback(released: ConsoleHarness) -> None:
    out = await released.say("@sam #review !update A-1 corrected text")
    copy = next(line for line in out if line.startswith("#metro-pd (edited)"))
    assert "Feedback: !feedback A-1 useful|not-useful" in copy
