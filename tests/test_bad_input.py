"""Mistakes get a clear, polite answer to the person who made them, and change nothing."""

from __future__ import annotations

import pytest

from tests.harness import ConsoleHarness, lines_for
from tests.snapshots import state_of

TIP = "@olly #tips !tip Man photographing the substation fence | category: photo"


@pytest.fixture
async def harness(db) -> ConsoleHarness:
    h = ConsoleHarness(db)
    await h.say(TIP)
    await h.say("@ana #review !claim T-1")
    return h


BAD = [
    ("@ana #review !frob T-1", "@ana", "I don't know “!frob”"),
    ("@ana #review !claim", "@ana", "Which tip? Usage: !claim T-1"),
    ("@ana #review !claim banana", "@ana", "“banana” is not a tip id"),
    ("@ana #review !claim T-99", "@ana", "There is no T-99"),
    ("@ana #review !ask T-1", "@ana", "Please add the question"),
    # The usage names the tip typed, not an example one that a copy would act on.
    ("@ana #review !reject T-7", "@ana", "Please add the reason. Usage: !reject T-7 <reason>"),
    ("@ana #review !dup T-1 T-1", "@ana", "can't be a duplicate of itself"),
    ("@ana #review !dup T-1 nope", "@ana", "is not a tip id"),
    ("@ali #review !approve T-1", "@ali", "claimed by console:ana"),
    ("@ana #review !claim T-1", "@ana", "You already hold T-1"),
    ("@bob #review !claim T-1", "@bob", "Only the center's analysts and supervisors"),
    ("@bob #review !reload", "@bob", "Only an administrator"),
    ("@bob #general !tip Something", "@bob", "intake channel or in a direct message"),
    (
        "@olly #tips !tip Van | category: spaceship",
        "@olly",
        "is not a category. Use one of: aviation",
    ),
    (
        "@olly #tips !tip Van | colour: red",
        "@olly",
        "I don't know the field “colour”. Use: category, location",
    ),
    ("@olly #tips !tip Van | region: mars", "@olly", "Use one of: north, south, downtown"),
    ("@olly #tips !tip Van | urgency: yesterday", "@olly", "Use immediate, priority or routine"),
    ("@olly #tips !tip", "@olly", "Please describe what you saw"),
    (
        "@olly #tips !tip | category: photo",
        "@olly",
        "Please start with what you saw, then the fields: !tip <what you saw> | category: photo",
    ),
    ("@olly #tips !tip Van | category photo", "@olly", "after | write key: value"),
    (
        "@olly #tips !tip " + "x" * 600,
        "@olly",
        "The summary is too long (600 characters; at most 500)",
    ),
    ("@olly #tips !tip " + "y" * 7000, "@olly", "That message is too long"),
    ("@olly @bot !reply T-1", "@olly", "Please add the answer"),
    ("@otto @bot !reply T-1 I saw it too", "@otto", "Only the officer who filed T-1"),
    ("@olly @bot !status T-x", "@olly", "is not a tip id"),
    ("@ana #review !alert #A-9:", "@ana", "There is no A-9."),
    (
        "@olly @bot !status T-1 T-2",
        "@olly",
        "One tip at a time, please: !status T-1, then !status T-2.",
    ),
    ("@olly #tips !tips Van", "@olly", "I don't know “!tips”. Did you mean !tip?"),
    (
        "@olly #tips !tip: Van idling by the gate since noon",
        "@olly",
        "Did you mean !tip? To send it again: !tip Van idling by the gate since noon",
    ),
    ("@olly @bot !help claim", "@olly", "claim is for analysts and supervisors"),
    ("@olly @bot !help foo", "@olly", "There is no command foo."),
    ("@olly @bot !help stats", "@olly", "There is no command stats. Did you mean status?"),
]


@pytest.mark.parametrize(("line", "to", "expected"), BAD, ids=[b[2][:30] for b in BAD])
async def test_bad_input_answers_politely_and_changes_nothing(
    harness: ConsoleHarness, line: str, to: str, expected: str
) -> None:
    before = await state_of(harness.bot.db)
    out = await harness.say(line)
    assert len(out) == 1, out  # one answer, and no card edit or post anywhere else
    assert out[0].startswith(to + " ")
    assert expected in out[0]
    assert await state_of(harness.bot.db) == before


@pytest.mark.parametrize("typed", ["T-1:", "T-1,", "#T-1", "#1"])
async def test_a_tip_id_as_typed_before_the_rest_of_a_sentence(
    harness: ConsoleHarness, typed: str
) -> None:
    await harness.say("@ana #review !ask T-1 What was he carrying?")
    out = await harness.say(f"@olly @bot !reply {typed} a tripod")
    assert "@olly Thanks — your answer was added to T-1." in out, out
    status = await harness.say(f"@olly @bot !status {typed}")
    assert status[0].startswith("@olly T-1\n"), status
    assert "Answer: a tripod" in status[0]


async def test_closed_tip_refuses_every_triage(harness: ConsoleHarness) -> None:
    await harness.say("@ana #review !reject T-1 Lawful photography")
    before = await state_of(harness.bot.db)
    for line in (
        "!claim T-1",
        "!approve T-1",
        "!ask T-1 anything?",
        "!reject T-1 again",
        "!dup T-1 T-2",
    ):
        out = await harness.say(f"@sam #review {line}")
        assert "already rejected" in out[0] or "There is no T-2" in out[0], out
    assert await state_of(harness.bot.db) == before


async def test_officer_may_not_approve_own_tip_even_as_analyst(db) -> None:
    h = ConsoleHarness(db)
    await h.say("@ana @bot !tip Suspicious drone over the reservoir | category: aviation")
    await h.say("@ana #review !claim T-1")
    before = await state_of(db)
    out = await h.say("@ana #review !approve T-1")
    assert out == [
        "@ana You filed T-1, so someone else must approve it (four-eyes rule): a supervisor "
        "can take it over with !claim T-1."
    ]
    assert await state_of(db) == before
    out = await h.say("@sam #review !claim T-1")  # a supervisor takes over and approves
    out = await h.say("@sam #review !approve T-1 confirm")
    assert any("APPROVED" in line for line in out)


async def test_mentions_markup_and_terminal_tricks_stay_inert(db) -> None:
    from commands.context import Command

    h = ConsoleHarness(db)
    hostile = (
        "!tip <!channel> <@U024BE7LH> @room <https://evil.example> "
        "\x1b[2J\u202eevil\u202c' OR 1=1; DROP TABLE tips;--\n#review FAKE CARD"
        "\nlocation: <b>Main</b>\ndetails: line one"
    )
    await h.bot.handle(Command(actor="console:olly", channel="console:#tips", text=hostile))
    await h.bot.drain()
    card = lines_for(h.printed, "#review")[0]
    # Stored and shown as text, exactly what the officer typed, minus terminal controls and
    # direction overrides; no line of the card can pose as another message.
    assert "<!channel> <@U024BE7LH> @room <https://evil.example>" in card
    assert "Location: <b>Main</b>" in card
    assert "\x1b" not in card and "\u202e" not in card
    assert "DROP TABLE tips" in card
    assert all(line.startswith("    ") for line in card.split("\n")[1:])
    out = await h.say("@ana #review !status")
    assert "Open tips (1)" in out[0]  # the tips table is alive and well


async def test_a_stray_bar_in_a_link_is_explained(db) -> None:
    h = ConsoleHarness(db)
    out = await h.say("@olly #tips !tip Phishing link <https://evil.example|your bank>")
    assert "after | write key: value" in out[0]
    assert await state_of(db) == {"tips": [], "notes": [], "audit": 0}


async def test_ordinary_chatter_is_ignored(db) -> None:
    h = ConsoleHarness(db)
    assert await h.say("@olly #tips good morning everyone") == []
