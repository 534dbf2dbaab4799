"""An officer files, analysts triage, everyone sees what they should — through the console."""

from __future__ import annotations

from tests.harness import ConsoleHarness, lines_for
from tests.snapshots import state_of

TIP = "@olly #tips !tip Man photographing the substation fence | category: photo | location: 5th & Main | urgency: priority"


async def test_tip_reaches_review_channels_and_officer_gets_receipt(db) -> None:
    h = ConsoleHarness(db)
    out = await h.say(TIP)

    cards = lines_for(out, "#review") + lines_for(out, "#review-night")
    assert len(cards) == 2, out
    assert "T-1 · NEW · priority · PHOTO" in cards[0]
    assert "Location: 5th & Main" in cards[0]
    assert "Part B behaviour" in cards[0]  # photography needs more facts before approval
    assert "[Claim: !claim T-1]" in cards[0]
    receipt = lines_for(out, "@olly")
    assert len(receipt) == 1 and "Received T-1" in receipt[0]
    # The tip was committed before the receipt went out: the receipt is printed after the cards.
    assert out.index(receipt[0]) > out.index(cards[0])
    assert not lines_for(out, "#cyber")


async def test_routing_follows_category(db) -> None:
    h = ConsoleHarness(db)
    out = await h.say("@olly #tips !tip Phishing wave against water utility | category: cyber")
    assert lines_for(out, "#cyber") and not lines_for(out, "#review")


async def test_full_triage_loop_edits_card_in_place(db) -> None:
    h = ConsoleHarness(db)
    await h.say(TIP)

    out = await h.say("@ana #review !claim T-1")
    edits = [line for line in out if line.startswith("#review (edited)")]
    assert len(edits) == 1 and "CLAIMED · console:ana" in edits[0]
    assert lines_for(out, "@ana") == ["@ana You hold T-1 now."]

    out = await h.say("@ana #review !ask T-1 What was he carrying?")
    question = lines_for(out, "@olly")
    assert len(question) == 1 and "What was he carrying?" in question[0]
    assert "!reply T-1" in question[0]
    assert any("NEEDS INFO" in line for line in out if "(edited)" in line)

    out = await h.say("@olly @bot !reply T-1 A tripod and a notebook")
    card = next(line for line in out if line.startswith("#review (edited)"))
    assert "A (console:olly): A tripod and a notebook" in card
    assert "CLAIMED" in card
    assert any("answered on T-1" in line for line in lines_for(out, "@ana"))

    out = await h.say("@ana #review !approve T-1 to:metro-pd confirm")
    card = next(line for line in out if line.startswith("#review (edited)"))
    assert "APPROVED" in card and "[Claim" not in card and "[Approve" not in card
    assert any("was approved" in line for line in lines_for(out, "@olly"))

    # Cards are edited, never reposted: exactly one post per review channel in the whole run.
    posts = [p for p in h.printed if p.startswith("#review T-1")]
    assert len(posts) == 1


async def test_reject_and_duplicate_tell_the_officer(db) -> None:
    h = ConsoleHarness(db)
    await h.say(TIP)
    await h.say(
        "@olly #tips !tip Same man photographing the substation again | location: 5th & Main"
    )
    await h.say("@ana #review !claim T-2")
    out = await h.say("@ana #review !dup T-2 T-1")
    assert any("merged into T-1" in line for line in lines_for(out, "@olly"))
    assert any("DUPLICATE · by console:ana of T-1" in line for line in out)

    await h.say("@ali #review !claim T-1")
    out = await h.say("@ali #review !reject T-1 Licensed surveyor, verified with the utility")
    assert any(
        "closed without action: Licensed surveyor" in line for line in lines_for(out, "@olly")
    )

    # A third report of the same, merged into the tip already closed without action: the
    # officer is told so, not left to think it is being worked.
    await h.say("@olly #tips !tip The photographer at the substation is back")
    await h.say("@ali #review !claim T-3")
    out = await h.say("@ali #review !dup T-3 T-1")
    assert lines_for(out, "@olly") == [
        "@olly Your tip T-3 was merged into T-1, which covers the same activity, reviewed "
        "earlier and closed without action."
    ]


async def test_second_card_lists_similar_open_tip(db) -> None:
    h = ConsoleHarness(db)
    await h.say(TIP)
    out = await h.say("@otto #tips !tip Drone photographing the substation | location: 5th & main")
    card = lines_for(out, "#review")[0]
    assert "Similar open tips: T-1 (same place" in card


async def test_status_shows_officers_their_own_tips(db) -> None:
    h = ConsoleHarness(db)
    await h.say(TIP)
    await h.say("@otto #tips !tip Someone else's tip about a van | category: survl")
    out = await h.say("@olly @bot !status")
    assert "T-1 · priority · NEW" in out[0] and "T-2" not in out[0]

    out = await h.say("@otto @bot !status T-1")
    assert "You can see only the tips you filed" in out[0]

    out = await h.say("@olly @bot !status T-1")
    assert "Man photographing the substation fence" in out[0]
    # One tip in full, as its card has it: what was reported and where it stands, once
    # (not the list's line again: id, time and summary).
    assert out[0].count("Man photographing") == 1 and out[0].count("T-1") == 1, out[0]
    for field in ("State: NEW\n", "Category: PHOTO", "Urgency: priority", "Location: 5th & Main"):
        assert field in out[0], (field, out[0])
    assert "Filed: " in out[0] and "by console:olly" in out[0], out[0]

    out = await h.say("@ana #review !status")
    assert "Open tips (2)" in out[0]


async def test_help_is_generated_for_the_speakers_role(db) -> None:
    h = ConsoleHarness(db)
    officer = (await h.say("@olly #tips !help"))[0]
    analyst = (await h.say("@ana #review !help"))[0]
    admin = (await h.say("@sam #review !help"))[0]
    assert "!tip" in officer and "!claim" not in officer and "!reload" not in officer
    assert "!claim T-1" in analyst and "!reload" not in analyst
    assert "!reload" in admin
    assert "photo (photography)" in (await h.say("@olly #tips !help tip"))[0]


async def test_a_platform_redelivery_does_not_file_twice(db) -> None:
    from commands.context import Command

    h = ConsoleHarness(db)
    command = Command(
        actor="console:olly",
        channel="console:#tips",
        text="!tip Van idling | category: survl",
        source_key="evt-1",
    )
    await h.bot.handle(command)
    await h.bot.handle(command)
    await h.bot.drain()
    state = await state_of(db)
    assert len(state["tips"]) == 1
    assert len(lines_for(h.printed, "@olly")) == 1


async def test_a_supervisor_taking_over_a_tip_tells_the_analyst_who_held_it(db) -> None:
    h = ConsoleHarness(db)
    await h.say("@olly #tips !tip Van circling the depot | category: survl")
    await h.say("@ana #review !claim T-1")
    await h.say("@ana #review !ask T-1 Which depot?")

    # Another analyst is refused with the way that works: a supervisor takes it over.
    out = await h.say("@ali #review !claim T-1")
    assert out == [
        "@ali T-1 is claimed by console:ana. Ask them to see it through or give it back "
        "(!unclaim T-1), or a supervisor to take it over (!claim T-1 from a supervisor does)."
    ]
    out = await h.say("@sam #review !claim T-1")
    assert lines_for(out, "@ana") == [
        "@ana console:sam took over T-1 from you; the officer's answers go to them now."
    ]
    out = await h.say("@olly @bot !reply T-1 The north depot")
    assert lines_for(out, "@sam") and not lines_for(out, "@ana")


async def test_a_tip_given_back_returns_to_the_queue_for_anyone_to_claim(db) -> None:
    h = ConsoleHarness(db)
    await h.say("@olly #tips !tip Van circling the depot | category: survl")
    await h.say("@ana #review !claim T-1")
    assert (await h.say("@ali #review !unclaim T-1")) == [
        "@ali T-1 is claimed by console:ana; only they or a supervisor may act on it."
    ]
    out = await h.say("@ana #review !unclaim T-1")
    assert lines_for(out, "@ana") == ["@ana T-1 is back in the queue for any analyst to claim."]
    [card] = lines_for(out, "#review")
    assert card.startswith("#review (edited) T-1 · NEW") and "[Claim: !claim T-1]" in card

    await h.say("@ali #review !claim T-1")
    out = await h.say("@sam #review !unclaim T-1")
    assert lines_for(out, "@ali") == [
        "@ali console:sam gave T-1 back to the queue; you no longer hold it."
    ]
    assert (await h.say("@sam #review !unclaim T-1")) == [
        "@sam Nobody holds T-1; it is in the queue already."
    ]


async def test_a_question_asked_stays_open_when_the_tip_is_given_back(db) -> None:
    h = ConsoleHarness(db)
    await h.say("@olly #tips !tip Drone over the rail yard | category: aviation")
    await h.say("@ana #review !claim T-1")
    await h.say("@ana #review !ask T-1 What colour was it?")
    out = await h.say("@ana #review !unclaim T-1")
    assert lines_for(out, "@ana") == [
        "@ana T-1 is back in the queue for any analyst to claim. Your question to the officer "
        "stays open: the answer goes to whoever claims it next, and onto the card."
    ]
    [card] = lines_for(out, "#review")
    assert "State: NEEDS INFO · waiting for the officer's answer" in card
    assert "[Claim: !claim T-1]" in card
    # Still waiting for the officer, as the officer's own list and a plain DM say.
    assert "T-1 · routine · NEEDS INFO" in (await h.say("@olly @bot !status"))[0]
    assert "!reply T-1 black, no markings" in (await h.say("@olly @bot black, no markings"))[0]

    await h.say("@ali #review !claim T-1")
    out = await h.say("@olly @bot !reply T-1 Black, no markings")
    # The answer reaches whoever holds the tip now, and the tip is back in their hands.
    assert lines_for(out, "@ali") == ["@ali The officer answered on T-1: Black, no markings"]
    assert "State: CLAIMED · console:ali" in lines_for(out, "#review")[0]


async def test_plain_words_in_a_dm_get_the_command_that_sends_them(db) -> None:
    h = ConsoleHarness(db)
    out = await h.say("@olly @bot Person leaving a bag at platform 3")
    assert out == [
        "@olly I act only on commands, so that wasn't sent to anyone. To report something: "
        "!tip <what you saw> | category: … | location: …  !help lists what you can do."
    ]
    # "tip …" is a tip in a direct message, on every platform.
    out = await h.say("@olly @bot tip Person leaving a bag at platform 3 | category: threat")
    assert lines_for(out, "@olly")[0].startswith("@olly Received T-1 (THREAT")

    await h.say("@ana #review !claim T-1")
    await h.say("@ana #review !ask T-1 Did anyone pick it up?")
    before = await state_of(db)
    out = await h.say("@olly @bot No, it is still there")
    assert out == [
        "@olly I act only on commands, so that wasn't sent to anyone. If it is your answer "
        "about T-1, send it as:\n    !reply T-1 No, it is still there"
    ]
    assert await state_of(db) == before  # nothing was taken as an answer by guesswork
    # In a channel, words are people talking to each other: the bot stays out of it.
    assert await h.say("@olly #tips anyone seen the sergeant?") == []
