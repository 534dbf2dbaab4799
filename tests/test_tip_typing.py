"""Tips as officers type them on a phone in a patrol car: fields after `;`, `,` or ` / `,
on lines of their own before or after the summary, categories and urgencies in their own
words, and every refusal giving back what was typed so it can be corrected, not retyped."""

from __future__ import annotations

from typing import Any

import pytest

from bot.tips import Urgency
from commands.context import Command
from commands.tip_parser import parse_tip
from storage.db import Database
from tests.harness import ConsoleHarness, lines_for
from tests.platform_double import PlatformDouble
from tests.policies import console_policy
from tests.snapshots import state_of

POLICY = console_policy()

READ_AS_FIELDS = [
    (
        "Man at fence; category: photo; location: 5th & Main; urgency: immediate",
        ("Man at fence", "PHOTO", "5th & Main", Urgency.IMMEDIATE),
    ),
    (
        "Man at fence, category: photo, location: 5th & Main, urgency: immediate",
        ("Man at fence", "PHOTO", "5th & Main", Urgency.IMMEDIATE),
    ),
    (
        "Man at fence / category: photo / location: 5th & Main / urgency: immediate",
        ("Man at fence", "PHOTO", "5th & Main", Urgency.IMMEDIATE),
    ),
    # Cut only where a field key and a colon follow: the comma stays in the location.
    (
        "Man at fence; location: 5th & Main, near the gate; urgency: immediate",
        ("Man at fence", None, "5th & Main, near the gate", Urgency.IMMEDIATE),
    ),
    # A key line before the summary, as a phone's keyboard puts it.
    (
        "category: photo\nMan filming the water tower",
        ("Man filming the water tower", "PHOTO", None, Urgency.ROUTINE),
    ),
    # Free text with a colon stays text, as does a word before a colon that is no key.
    (
        "He said: leave now\nPlate: ABC123; where: Pier 4 / urgency: urgent",
        ("He said: leave now Plate: ABC123", None, "Pier 4", Urgency.IMMEDIATE),
    ),
    # "Urgent" is no misspelt "urgency": the line is what was seen.
    (
        "Urgent: man with a gun at the gate; category: weapons",
        ("Urgent: man with a gun at the gate", "WPNS", None, Urgency.ROUTINE),
    ),
    # After a "|" too, a field may follow ";".
    (
        "Man filming | category: photo; location: Pier 4",
        ("Man filming", "PHOTO", "Pier 4", Urgency.ROUTINE),
    ),
]


@pytest.mark.parametrize(("typed", "read"), READ_AS_FIELDS, ids=[t for t, _ in READ_AS_FIELDS])
def test_fields_are_read_after_any_separator_and_on_any_line(
    typed: str, read: tuple[str, str | None, str | None, Urgency]
) -> None:
    draft = parse_tip(typed, POLICY)
    summary, category, location, urgency = read
    assert (draft.summary, draft.location, draft.urgency) == (summary, location, urgency)
    assert draft.category == (category or "OTHER")
    assert ("defaulted_category" in draft.extra) == (category is None)


def test_details_over_several_lines_keep_their_lines_and_a_field_after_them() -> None:
    draft = parse_tip("Van | details: first line\nsecond line\nWhen: yesterday", POLICY)
    assert (draft.details, draft.when) == ("first line\nsecond line", "yesterday")


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("surveillance", "SURVL"),
        ("drone", "AVIATION"),
        ("photo.", "PHOTO"),
        ("Vandalism", "SABOT"),
        ("weapons", "WPNS"),
        ("intrusion", "INTRSN"),
        ("SABOTAGE!", "SABOT"),
        ("phishing", "CYBER"),
    ],
)
def test_categories_in_an_officers_words(typed: str, code: str) -> None:
    assert parse_tip(f"Van | category: {typed}", POLICY).category == code


@pytest.mark.parametrize(
    ("typed", "urgency"),
    [
        ("URGENT!", Urgency.IMMEDIATE),
        ("asap", Urgency.IMMEDIATE),
        ("Emergency", Urgency.IMMEDIATE),
        ("P1", Urgency.IMMEDIATE),
        ("high priority", Urgency.PRIORITY),
        ("medium", Urgency.PRIORITY),
        ("med", Urgency.PRIORITY),
        ("p2", Urgency.PRIORITY),
        ("low-priority", Urgency.ROUTINE),
        ("p3", Urgency.ROUTINE),
    ],
)
def test_urgencies_in_an_officers_words(typed: str, urgency: Urgency) -> None:
    assert parse_tip(f"Van | urgency: {typed}", POLICY).urgency == urgency


async def refused(h: ConsoleHarness, line: str) -> str:
    """The one answer to a refused tip; nothing was filed."""
    before = await state_of(h.bot.db)
    out = await h.say(line)
    assert len(out) == 1, out
    assert await state_of(h.bot.db) == before
    return out[0]


async def test_fields_without_a_summary_are_given_back_in_the_right_order(db: Database) -> None:
    h = ConsoleHarness(db)
    answer = await refused(h, "@olly #tips !tip category: photo | location: 5th & Main")
    assert answer == (
        "@olly Please start with what you saw, then the fields: "
        "!tip <what you saw> | category: photo | location: 5th & Main"
    )


async def test_every_unknown_field_is_named_at_once_with_the_one_meant(db: Database) -> None:
    h = ConsoleHarness(db)
    answer = await refused(
        h, "@olly #tips !tip Man filming the tower | catagory: photo | colour: red | lcation: x"
    )
    assert "I don't know the field “catagory”. Did you mean category?" in answer
    assert "I don't know the field “colour”. Use: category, location" in answer
    assert "I don't know the field “lcation”. Did you mean location?" in answer


async def typed_in_tips(h: ConsoleHarness, text: str, **more: Any) -> None:
    """What olly sends in #tips as one message, line breaks and all (a console line can't
    carry them), and its answers delivered."""
    await h.bot.handle(Command(actor="console:olly", channel="console:#tips", text=text, **more))
    await h.bot.drain(10.0)


async def test_a_field_on_the_line_after_the_command_is_read(db: Database) -> None:
    h = ConsoleHarness(db)
    await typed_in_tips(h, "!tip\ncategory: photo\nMan filming the water tower")
    assert h.printed[-1].startswith("@olly Received T-1 (PHOTO — photography, routine)")


async def test_a_mistyped_key_on_its_own_line_is_refused_as_after_a_bar(db: Database) -> None:
    h = ConsoleHarness(db)
    before = await state_of(db)
    await typed_in_tips(h, "!tip Man filming the water tower\nCatagory: photo")
    assert "I don't know the field “Catagory”. Did you mean category?" in h.printed[-1]
    assert await state_of(db) == before


async def test_an_unknown_category_suggests_the_close_one_then_the_codes(db: Database) -> None:
    h = ConsoleHarness(db)
    answer = await refused(h, "@olly #tips !tip Van by the gate | category: vandalsim")
    first_line = answer.split("\n")[0]
    assert first_line == (
        "@olly “vandalsim” is not a category. Did you mean sabot (sabotage / tampering / "
        "vandalism)? Use one of: aviation, cyber, elicit, expert, intrsn, matrls, misrep, "
        "photo, recrut, sabot, sector, survl, testsec, theft, threat, wpns, other."
    )


async def test_a_refused_tip_is_given_back_to_send_again(db: Database) -> None:
    h = ConsoleHarness(db)
    typed = "Two men filming the water tower from a grey van | urgency: yesterday"
    answer = await refused(h, f"@olly #tips !tip {typed}")
    assert answer.endswith(f"\n    Your tip, to correct and send again: !tip {typed}"), answer
    # A few words are as quickly typed again.
    assert "send again" not in await refused(h, "@olly #tips !tip Van | urgency: yesterday")


async def test_on_slack_the_tip_is_given_back_as_slack_spells_it(db: Database) -> None:
    slack = PlatformDouble(platform="slack")
    h = ConsoleHarness(db, extra_senders={"slack": slack})
    typed = "Two men filming the water tower | category: spaceship"
    await h.bot.handle(
        Command(actor="slack:UOLLY", channel="slack:DOLLY", text=f"!tip {typed}", is_dm=True)
    )
    await h.bot.drain(10.0)
    assert [r.target for r in slack.received] == ["slack:UOLLY"]
    assert f"Your tip, to correct and send again: /tip {typed}" in slack.received[0].text


async def test_a_long_field_is_named_grammatically(db: Database) -> None:
    h = ConsoleHarness(db)
    answer = await refused(h, "@olly #tips !tip Van | details: " + "x" * 4001)
    assert "The details field is too long (4,001 characters; at most 4,000)" in answer


def test_a_category_typed_before_the_report_on_one_line_is_read_so() -> None:
    draft = parse_tip("category: photo man taking pics of the bridge", POLICY)
    assert (draft.category, draft.summary) == ("PHOTO", "man taking pics of the bridge")
    draft = parse_tip("urgency: immediate man with a rifle by the school", POLICY)
    assert (draft.urgency, draft.summary) == (Urgency.IMMEDIATE, "man with a rifle by the school")


async def test_a_space_after_the_bang_is_forgiven(db: Database) -> None:
    h = ConsoleHarness(db)
    out = await h.say("@olly #tips ! tip Backpack left at the bus station | category: threat")
    assert lines_for(out, "@olly")[0].startswith("@olly Received T-1 (THREAT")


async def test_a_forms_boxes_are_filed_as_they_stand(db: Database) -> None:
    """Slack's /tip form hands over its boxes: a comma and a "time:" inside the details are
    the officer's words, not a second When field (which the form has its own box for)."""
    h = ConsoleHarness(db)
    form = (
        ("summary", "Van circling the depot"),
        ("category", "SURVL"),
        ("when", "23:40"),
        ("details", "Seen twice, time: 23:40 and 01:10; urgency: not clear"),
    )
    await typed_in_tips(h, "!tip (form)", form=form)
    assert h.printed[-1].startswith("@olly Received T-1 (SURVL — observation / surveillance")
    card = next(line for line in h.printed if line.startswith("#review T-1"))
    assert "When: 23:40" in card
    assert "Details: Seen twice, time: 23:40 and 01:10; urgency: not clear" in card
