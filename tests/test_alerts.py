"""Approving a tip releases an alert that reaches exactly the cleared partners, at once;
the analyst first sees who will see it, and !alert shows where it went."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from bot.clock import ManualClock
from bot.dissemination import AlertSpec, plan_dissemination
from bot.policy import Policy
from bot.tlp import TLP
from storage.audit_repo import load_audit
from storage.db import Database
from storage.tables import alerts, outbox
from tests.harness import ConsoleHarness, lines_for
from tests.policies import console_policy
from tests.snapshots import state_of

ALERT_POLICY = """
[center]
name = "Test Fusion Center"
timezone = "America/New_York"
regions = ["north", "south", "downtown"]

[roles]
officers = ["*"]
analysts = ["console:ana", "console:ali"]
supervisors = ["console:sam"]
admins = ["console:sam"]

[[intake]]
channels = ["console:#tips"]

[[review]]
name = "general"
channels = ["console:#review"]
categories = ["*"]

[[partners]]
id = "metro-pd"
name = "Metro Police Department"
sector = "local"
max_tlp = "AMBER"
caveats = ["LES"]
channels = ["console:#metro-pd"]
internal_channels = ["console:#metro-pd-internal"]
red_recipients = ["console:chief"]

[[partners]]
id = "transit"
name = "Regional Transit Authority"
sector = "private"
max_tlp = "GREEN"
categories = ["SABOT", "SURVL", "THREAT", "INTRSN", "PHOTO"]
regions = ["downtown", "north"]
delivery = "digest"
channels = ["console:#transit"]

[[partners]]
id = "state-police"
name = "State Police Intelligence Unit"
sector = "state"
max_tlp = "RED"
caveats = ["LES", "CUI"]
channels = ["console:#state-police"]
internal_channels = ["console:#state-police-intel"]
red_recipients = ["console:trooper"]
"""

TIP = (
    "@olly #tips !tip Man photographing the substation fence | category: photo"
    " | region: downtown | location: 5th & Main"
)
START = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
PARTNER_PLACES = {
    "#metro-pd",
    "#metro-pd-internal",
    "#transit",
    "#state-police",
    "#state-police-intel",
    "@chief",
    "@trooper",
}


def alert_policy() -> Policy:
    return console_policy(ALERT_POLICY)


@pytest.fixture
async def harness(db: Database) -> ConsoleHarness:
    h = ConsoleHarness(db, policy=alert_policy(), clock=ManualClock(START))
    await h.say(TIP)
    await h.say("@ana #review !claim T-1")
    return h


async def everything(db: Database) -> dict[str, object]:
    """state_of plus what it doesn't see: alerts, and every message that isn't an answer."""
    async with db.read() as conn:
        alert_rows = (await conn.execute(select(alerts))).all()
        messages = (
            await conn.execute(
                select(outbox.c.key, outbox.c.target, outbox.c.op, outbox.c.payload)
                .where(outbox.c.message_key.is_not(None))
                .order_by(outbox.c.id)
            )
        ).all()
    return {
        **(await state_of(db)),
        "alerts": [tuple(r) for r in alert_rows],
        "messages": [tuple(r) for r in messages],
    }


def reached(out: list[str]) -> set[str]:
    """Partner channels and people that printed something."""
    return {line.split(" ", 1)[0] for line in out} & PARTNER_PLACES


async def alert_targets(db: Database, alert_id: int = 1) -> list[str]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(outbox.c.target).where(outbox.c.message_key == f"alert:{alert_id}")
        )
        return [r.target for r in rows]


# --- the preview ------------------------------------------------------------------------


async def test_preview_shows_who_will_see_it_and_changes_nothing(
    harness: ConsoleHarness,
) -> None:
    before = await everything(harness.bot.db)
    out = await harness.say("@ana #review !approve T-1 tlp:green to:metro-pd,transit")

    assert len(out) == 1 and out[0].startswith("@ana "), out
    preview = out[0]
    assert "[TLP:GREEN]" in preview
    assert "Will reach: console:#metro-pd — Metro Police Department (metro-pd), channel" in preview
    assert "console:#metro-pd-internal — Metro Police Department (metro-pd), internal channel" in (
        preview
    )
    assert (
        "console:#transit — Regional Transit Authority (transit), channel (in its next "
        "digest, 2026-11-26 07:00 EST)" in preview
    )
    assert "state-police — not named in to:" in preview
    assert "To send it: !approve T-1 tlp:green to:metro-pd,transit now confirm" in preview
    assert "[Confirm and send: !approve T-1 tlp:green to:metro-pd,transit now confirm]" in preview
    assert await everything(harness.bot.db) == before


async def test_preview_names_every_exclusion_reason(harness: ConsoleHarness) -> None:
    out = await harness.say("@sam #review !approve T-1 tlp:amber caveat:CUI")
    preview = out[0]
    assert "metro-pd — not cleared for caveat CUI" in preview
    assert "transit — max TLP:GREEN is below TLP:AMBER" in preview
    assert "console:#state-police-intel — State Police Intelligence Unit" in preview
    assert "To send it: !approve T-1 tlp:amber caveat:CUI to:all now confirm" in preview


async def test_confirming_the_previewed_command_sends_what_was_previewed(
    harness: ConsoleHarness,
) -> None:
    preview = (await harness.say("@ana #review !approve T-1 tlp:green to:metro-pd,transit"))[0]
    command = preview.split("To send it: ", 1)[1].split("\n", 1)[0].strip()
    out = await harness.say(f"@ana #review {command}")
    # transit takes its alerts in a digest; everyone else previewed receives now.
    assert reached(out) == {"#metro-pd", "#metro-pd-internal"}
    assert sorted(await alert_targets(harness.bot.db)) == [
        "console:#metro-pd",
        "console:#metro-pd-internal",
    ]


async def test_preview_shows_a_scheduled_time_and_which_copies_wait_for_a_digest(
    harness: ConsoleHarness,
) -> None:
    # 10:00 EST now: at:07:00 is tomorrow's, as the date-and-time spellings say outright.
    for at in ("at:2026-11-26 07:00", "at:2026-11-26T07:00", "at:07:00"):
        preview = (
            await harness.say(f"@ana #review !approve T-1 tlp:green to:metro-pd,transit {at}")
        )[0]
        assert "Timing: now" not in preview
        assert (
            "Timing: at 2026-11-26 07:00 EST; the audience is planned again at that time" in preview
        )
        assert "console:#metro-pd — Metro Police Department (metro-pd), channel\n" in preview
        assert (
            "Regional Transit Authority (transit), channel (in its next digest, "
            "2026-11-26 07:00 EST)" in preview
        )
        assert (
            "To send it: !approve T-1 tlp:green to:metro-pd,transit "
            "at:2026-11-26T07:00:00-05:00 confirm"
        ) in preview


async def test_preview_of_a_digest_release_marks_every_channel_copy(
    harness: ConsoleHarness,
) -> None:
    preview = (await harness.say("@ana #review !approve T-1 tlp:green to:metro-pd digest"))[0]
    assert "Timing: in each partner's next digest" in preview
    assert (
        "console:#metro-pd — Metro Police Department (metro-pd), channel (in its next "
        "digest, 2026-11-26 07:00 EST)" in preview
    )
    assert "internal channel (in its next digest, 2026-11-26 07:00 EST)" in preview
    # TLP:RED direct messages never wait in a digest, and the preview doesn't say they do.
    preview = (await harness.say("@sam #review !approve T-1 tlp:red to:state-police digest"))[0]
    assert "console:trooper — State Police Intelligence Unit (state-police), direct message\n" in (
        preview
    )


async def test_the_previews_titled_command_confirms_and_keeps_the_title(
    harness: ConsoleHarness,
) -> None:
    preview = (await harness.say("@ana #review !approve T-1 to:metro-pd title: Fence photos"))[0]
    command = "!approve T-1 tlp:amber to:metro-pd now confirm title: Fence photos"
    assert f"To send it: {command}\n" in preview + "\n"
    assert f"[Confirm and send: {command}]" in preview
    out = await harness.say(f"@ana #review {command}")
    assert "A-1 · Fence photos\n" in lines_for(out, "#metro-pd")[0] + "\n"


async def test_confirm_at_the_end_of_a_title_is_never_read_as_confirm(
    harness: ConsoleHarness,
) -> None:
    before = await everything(harness.bot.db)
    out = await harness.say("@ana #review !approve T-1 to:metro-pd title: Please confirm")
    assert len(out) == 1 and out[0].startswith("@ana "), out
    assert "Nothing was sent: title: goes last and takes the rest of the line" in out[0]
    assert "Put confirm and the other options before title:" in out[0]
    assert "!approve T-1 to:metro-pd confirm title: Please\n" in out[0]
    quoted = '!approve T-1 to:metro-pd title: "Please confirm"'
    assert out[0].rstrip().endswith(quoted)
    assert await everything(harness.bot.db) == before

    # The quoted title is the whole title, and the preview's command keeps it so.
    preview = (await harness.say(f"@ana #review {quoted}"))[0]
    assert "alert from T-1 · Please confirm" in preview
    command = '!approve T-1 tlp:amber to:metro-pd now confirm title: "Please confirm"'
    assert f"To send it: {command}" in preview
    assert await everything(harness.bot.db) == before
    out = await harness.say(f"@ana #review {command}")
    assert "A-1 · Please confirm" in lines_for(out, "#metro-pd")[0]


async def test_options_after_the_title_are_refused_with_the_command_that_works(
    harness: ConsoleHarness,
) -> None:
    before = await everything(harness.bot.db)
    out = await harness.say("@ana #review !approve T-1 title: X to:metro-pd")
    assert "I won't read “to:metro-pd” out of the title as an option" in out[0]
    assert "!approve T-1 to:metro-pd title: X\n" in out[0]
    out = await harness.say("@ana #review !approve T-1 title: Drone tlp:green at:07:00 now")
    assert "“tlp:green”, “at:07:00”, “now” out of the title as options" in out[0]
    assert "!approve T-1 tlp:green at:07:00 now title: Drone\n" in out[0]
    # An option given before title: already is never moved there a second time (the
    # suggestion would give it twice, or confirm twice): only the quoted title is offered.
    out = await harness.say("@ana #review !approve T-1 to:metro-pd confirm title: Please confirm")
    assert out == [
        "@ana Nothing was sent: title: goes last and takes the rest of the line, so I won't "
        "read “confirm” out of the title as an option. If it belongs to the title, put the "
        'title in quotes:\n    !approve T-1 to:metro-pd confirm title: "Please confirm"'
    ]
    out = await harness.say("@ana #review !approve T-1 to:metro-pd title: Depot to:transit")
    assert "to:transit" in out[0] and "to:metro-pd to:transit" not in out[0]
    assert await everything(harness.bot.db) == before


async def test_options_are_read_as_people_space_them(harness: ConsoleHarness) -> None:
    """A space after to:'s colon or after a comma, and amber-strict for AMBER+STRICT."""
    preview = (
        await harness.say("@sam #review !approve T-1 tlp:amber-strict to: metro-pd, state-police")
    )[0]
    assert preview.startswith("@sam [TLP:AMBER+STRICT]")
    assert "to:metro-pd,state-police" in preview


async def test_a_title_of_ordinary_words_is_taken_as_it_is(harness: ConsoleHarness) -> None:
    title = "Confirmed: man at the gate now and then, titles: none"
    out = await harness.say(f"@ana #review !approve T-1 to:metro-pd confirm title: {title}")
    assert f"A-1 · {title}" in lines_for(out, "#metro-pd")[0]


async def test_approving_with_the_question_unanswered_says_so(harness: ConsoleHarness) -> None:
    await harness.say("@ana #review !ask T-1 What was he carrying?")
    note = (
        "question to the officer on T-1 is still unanswered "
        "(asked 2026-11-25 10:00 EST: “What was he carrying?”)"
    )
    preview = (await harness.say("@ana #review !approve T-1 to:metro-pd"))[0]
    assert f"Note: your {note}" in preview
    preview = (await harness.say("@sam #review !approve T-1 to:metro-pd"))[0]
    assert f"Note: console:ana's {note}" in preview

    out = await harness.say("@ana #review !approve T-1 to:metro-pd confirm")
    assert "released as A-1" in lines_for(out, "@ana")[0]
    assert (
        f"Note: your {note}; the officer is told no answer is needed any more."
        in (lines_for(out, "@ana")[0])
    )
    assert "the question asked about it no longer needs an answer" in lines_for(out, "@olly")[0]


async def test_approving_an_answered_tip_has_no_note(harness: ConsoleHarness) -> None:
    await harness.say("@ana #review !ask T-1 What was he carrying?")
    await harness.say("@olly @bot !reply T-1 A tripod")
    preview = (await harness.say("@ana #review !approve T-1 to:metro-pd"))[0]
    assert "Note:" not in preview and "unanswered" not in preview


async def test_help_approve_shows_how_to_write_a_time(harness: ConsoleHarness) -> None:
    help_text = (await harness.say("@ana #review !help approve"))[0]
    assert "at:YYYY-MM-DD HH:MM" in help_text
    assert "Example: !approve T-1 to:metro-pd at:2026-12-01 07:00" in help_text
    assert "confirm title: Substation surveillance" in help_text


# --- release ----------------------------------------------------------------------------


async def test_confirm_delivers_to_exactly_the_planned_partner_channels(
    harness: ConsoleHarness,
) -> None:
    db = harness.bot.db
    out = await harness.say("@sam #review !approve T-1 confirm title: Substation surveillance")

    # Default TLP:AMBER: metro-pd (AMBER) and state-police reach; transit (GREEN) does not.
    assert reached(out) == {
        "#metro-pd",
        "#metro-pd-internal",
        "#state-police",
        "#state-police-intel",
    }
    expected = plan_dissemination(
        alert_policy(), AlertSpec(TLP.AMBER, frozenset(), "PHOTO", "downtown")
    ).targets
    assert sorted(await alert_targets(db)) == sorted(expected)

    copy = lines_for(out, "#metro-pd")[0]
    assert copy.startswith("#metro-pd [TLP:AMBER]")
    assert "A-1 · Substation surveillance" in copy
    assert "Man photographing the substation fence" in copy
    assert "Location: 5th & Main" in copy
    assert "Category: PHOTO" in copy and "Region: downtown" in copy
    assert "Feedback: !feedback A-1 useful|not-useful" in copy
    assert "olly" not in copy  # the source stays with the center

    card = next(line for line in out if line.startswith("#review (edited)"))
    assert "APPROVED · by console:sam" in card and "released as alert A-1" in card
    assert any("became alert A-1" in line for line in lines_for(out, "@olly"))
    assert any("released as A-1 (TLP:AMBER) to 2 partners" in line for line in out)

    async with db.read() as conn:
        actions = [e.action for e in await load_audit(conn)]
        row = (await conn.execute(select(alerts))).one()
    assert actions[-3:] == ["alert.created", "tip.approved", "alert.released"]
    assert row.state == "released" and row.tlp == "AMBER" and row.timing == "now"
    assert row.audience is None and row.released_by == "console:sam"
    assert {e["partner_id"] for e in row.plan["excluded"]} == {"transit"}


async def test_caveats_travel_in_the_banner_and_exclude_the_uncleared(
    harness: ConsoleHarness,
) -> None:
    out = await harness.say("@ana #review !approve T-1 caveat:LES to:metro-pd,transit confirm")
    assert reached(out) == {"#metro-pd", "#metro-pd-internal"}
    assert lines_for(out, "#metro-pd")[0].startswith("#metro-pd [TLP:AMBER // LES]")
    assert not lines_for(out, "#transit")


async def test_amber_strict_reaches_only_internal_channels(harness: ConsoleHarness) -> None:
    out = await harness.say(
        "@ana #review !approve T-1 tlp:amber+strict caveat:LES to:state-police,metro-pd confirm"
    )
    assert reached(out) == {"#state-police-intel"}
    assert lines_for(out, "#state-police-intel")[0].startswith(
        "#state-police-intel [TLP:AMBER+STRICT // LES]"
    )


async def test_red_reaches_only_named_cleared_people_by_direct_message(
    harness: ConsoleHarness,
) -> None:
    out = await harness.say("@sam #review !approve T-1 tlp:red confirm")
    # metro-pd names a person for RED but is cleared only to AMBER: its chief gets nothing.
    assert reached(out) == {"@trooper"}
    assert await alert_targets(harness.bot.db) == ["console:trooper"]
    assert lines_for(out, "@trooper")[0].startswith("@trooper [TLP:RED]")
    log = (await harness.say("@sam #review !alert A-1"))[0]
    assert "metro-pd — max TLP:AMBER is below TLP:RED" in log
    assert "console:trooper (state-police) — sent" in log


async def test_a_digest_partner_gets_the_alert_in_its_digest_not_at_once(
    harness: ConsoleHarness,
) -> None:
    out = await harness.say("@ana #review !approve T-1 tlp:green to:transit confirm")
    assert reached(out) == set()  # tests/test_digests.py follows it into the digest
    assert "0 deliveries now, 1 in digests" in lines_for(out, "@ana")[0]


async def test_release_is_once_only(harness: ConsoleHarness) -> None:
    await harness.say("@ana #review !approve T-1 tlp:green to:transit confirm")
    before = await everything(harness.bot.db)
    out = await harness.say("@ana #review !approve T-1 tlp:green to:transit confirm")
    assert len(out) == 1 and "already approved" in out[0]
    assert await everything(harness.bot.db) == before


# --- who may release what ---------------------------------------------------------------

SUPERVISOR_ONLY = [
    ("!approve T-1 tlp:red to:state-police confirm", "Releasing TLP:RED needs a supervisor"),
    ("!approve T-1 to:all confirm", "Sending to all partners now needs a supervisor"),
    ("!approve T-1 confirm", "Sending to all partners now needs a supervisor"),
]


@pytest.mark.parametrize(("command", "expected"), SUPERVISOR_ONLY)
async def test_analyst_is_refused_supervisor_releases_and_a_supervisor_may(
    harness: ConsoleHarness, command: str, expected: str
) -> None:
    db = harness.bot.db
    before = await everything(db)
    out = await harness.say(f"@ana #review {command}")
    assert len(out) == 1 and out[0].startswith("@ana "), out
    assert expected in out[0] and "Ask a supervisor (console:sam)" in out[0]
    assert await everything(db) == before

    out = await harness.say(f"@sam #review {command}")
    assert reached(out), out
    assert any("released as A-1" in line for line in lines_for(out, "@sam"))


async def test_analyst_preview_of_all_partners_says_who_to_ask_and_what_to_name(
    harness: ConsoleHarness,
) -> None:
    out = await harness.say("@ana #review !approve T-1")
    assert "Will reach: console:#metro-pd" in out[0]
    assert "Sending to all partners now needs a supervisor" in out[0]
    assert "to:metro-pd,state-police" in out[0]
    assert "Confirm and send" not in out[0]  # only a supervisor may: no button for her


async def test_an_alert_that_reaches_nobody_is_not_released(harness: ConsoleHarness) -> None:
    before = await everything(harness.bot.db)
    out = await harness.say("@ana #review !approve T-1 to:transit confirm")
    assert len(out) == 1
    assert (
        "reach no partner, so it can't be sent as it is (transit: max TLP:GREEN is below TLP:AMBER)"
        in out[0]
    )
    assert await everything(harness.bot.db) == before


BAD = [
    ("!approve T-1 tlp:purple", "is not a TLP 2.0 label. Use tlp: with one of clear, green"),
    ("!approve T-1 tlp:", "tlp: needs a value"),
    ("!approve T-1 tlp:green tlp:red", "tlp: is given twice"),
    ("!approve T-1 caveat:SECRET", "is not a caveat this center uses. Use one of: LES, CUI"),
    ("!approve T-1 to:nobody", "“nobody” is not a partner. Use to:all or partner ids: metro-pd"),
    ("!approve T-1 to:all,metro-pd", "to:all already names every partner"),
    (
        "!approve T-1 at:tomorrow",
        "is not a time I can read. Write the date and time, e.g. at:2026-11-26 07:00",
    ),
    ("!approve T-1 at:2026-11-24T09:00", "is in the past"),
    ("!approve T-1 now digest", "The timing is given twice"),
    ("!approve T-1 please", "I don't understand “please”"),
    ("!approve T-1 please", "to:…, now, digest or at:<time> (e.g. at:2026-12-01 07:00), confirm"),
    ("!approve T-1 at:24:00", "is not a time I can read"),
    ("!approve T-1 title:", "The title is empty"),
    ("!approve banana", "is not a tip id"),
    ("!approve", "Which tip?"),
    ("!approve T-9 to:metro-pd confirm", "There is no T-9"),
    # A typo gets the value meant, not only the list.
    ("!approve T-1 tlp:ambr", "“ambr” is not a TLP 2.0 label. Did you mean amber?"),
    ("!approve T-1 caveat:fouo", "“FOUO” is not a caveat this center uses. Did you mean U//FOUO?"),
    ("!approve T-1 to:state-pd", "“state-pd” is not a partner. Did you mean state-police?"),
]


@pytest.mark.parametrize(("command", "expected"), BAD, ids=[b[1][:30] for b in BAD])
async def test_bad_options_answer_politely_and_change_nothing(
    harness: ConsoleHarness, command: str, expected: str
) -> None:
    before = await everything(harness.bot.db)
    out = await harness.say(f"@ana #review {command}")
    assert len(out) == 1 and out[0].startswith("@ana "), out
    assert expected in out[0]
    assert await everything(harness.bot.db) == before


async def test_a_naive_time_is_read_in_the_centers_zone(harness: ConsoleHarness) -> None:
    # 09:00 New York on the day is 14:00 UTC, an hour before the clock's 15:00 UTC.
    out = await harness.say("@ana #review !approve T-1 at:2026-11-25T09:00")
    assert "is in the past (2026-11-25 10:00 EST now)" in out[0]


async def test_the_lifecycle_still_decides_who_may_approve(harness: ConsoleHarness) -> None:
    out = await harness.say("@ali #review !approve T-1 to:metro-pd")
    assert "claimed by console:ana" in out[0]
    out = await harness.say("@olly #tips !approve T-1 to:metro-pd")
    assert "Only the center's analysts and supervisors" in out[0]


# --- where it went ------------------------------------------------------------------------


async def test_alert_shows_markings_and_where_it_went(harness: ConsoleHarness) -> None:
    await harness.say("@ana #review !approve T-1 caveat:LES to:metro-pd,transit confirm")
    out = await harness.say("@ana #review !alert A-1")
    assert len(out) == 1
    log = out[0]
    assert log.startswith("@ana [TLP:AMBER // LES]")
    assert "A-1 · Man photographing the substation fence · RELEASED" in log
    assert "Source: T-1" in log
    assert "Audience: named: metro-pd, transit" in log
    assert "Released: 2026-11-25 10:00 EST by console:ana" in log
    assert "Copies: console:#metro-pd (metro-pd) — sent 2026-11-25 10:00 EST" in log
    assert "console:#metro-pd-internal (metro-pd) — sent" in log
    assert "transit — max TLP:GREEN is below TLP:AMBER" in log
    assert "state-police — not named in to:" in log


async def test_alert_log_shows_pending_deliveries(db: Database) -> None:
    # A partner on a platform this process doesn't run: its copy waits in the outbox.
    policy = alert_policy().model_copy(
        update={
            "partners": [
                p.model_copy(update={"channels": ["slack:C0METRO"], "internal_channels": []})
                if p.id == "metro-pd"
                else p
                for p in alert_policy().partners
            ]
        }
    )
    h = ConsoleHarness(db, policy=policy, clock=ManualClock(START))
    await h.say(TIP)
    await h.say("@ana #review !claim T-1")
    await h.say("@ana #review !approve T-1 to:metro-pd confirm")
    log = (await h.say("@ana #review !alert A-1"))[0]
    assert "slack:C0METRO (metro-pd) — pending since 2026-11-25 10:00 EST" in log


async def test_alert_command_refuses_politely(harness: ConsoleHarness) -> None:
    out = await harness.say("@ana #review !alert A-9")
    assert "There is no A-9" in out[0]
    out = await harness.say("@ana #review !alert T-1")
    assert "is not an alert id" in out[0]
    await harness.say("@ana #review !approve T-1 to:metro-pd confirm")
    out = await harness.say("@olly @bot !alert A-1")
    assert "Only the center's analysts and supervisors" in out[0]
