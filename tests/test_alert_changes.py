"""!update and !retract reach every delivered copy in place; copies that have not left yet
never leave with what the alert no longer says."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.clock import ManualClock
from bot.delivery import DeliveryError, HoldDelivery, TemporaryFailure
from bot.digests import send_digests
from bot.policy import Policy
from bot.scheduled_alerts import release_due_alerts
from storage.audit_repo import load_audit
from storage.db import Database
from storage.tables import alerts, outbox
from tests.harness import ConsoleHarness, lines_for
from tests.platform_double import PlatformDouble
from tests.test_alerts import ALERT_POLICY, START, TIP, alert_policy

# Released by the supervisor at the default TLP:AMBER: metro-pd and state-police (both
# immediate) get it in their channels; transit (cleared to GREEN) does not.
RELEASED_TO = ("#metro-pd", "#metro-pd-internal", "#state-police", "#state-police-intel")
OLD_TEXT = "Man photographing the substation fence"
NEW_TEXT = "Two men, not one; a grey van parked on 5th"
REASON = "Source recanted"


@pytest.fixture
async def released(db: Database) -> ConsoleHarness:
    h = ConsoleHarness(db, policy=alert_policy(), clock=ManualClock(START))
    await h.say(TIP)
    await h.say("@ana #review !claim T-1")
    out = await h.say("@sam #review !approve T-1 confirm title: Substation surveillance")
    assert {line.split(" ", 1)[0] for line in out} >= set(RELEASED_TO)
    return h


def edits_by_place(out: list[str]) -> dict[str, list[str]]:
    """Edited messages by the channel or person that printed them."""
    found: dict[str, list[str]] = {}
    for line in out:
        place, _, rest = line.partition(" ")
        if rest.startswith("(edited)"):
            found.setdefault(place, []).append(line)
    return found


async def outbox_snapshot(db: Database) -> list[tuple[object, ...]]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(outbox.c.target, outbox.c.op, outbox.c.state, outbox.c.payload).where(
                outbox.c.message_key.is_not(None)
            )
        )
        return [tuple(r) for r in rows]


# --- update -----------------------------------------------------------------------------


async def test_update_edits_every_delivered_copy_in_place(released: ConsoleHarness) -> None:
    clock = released.bot.core.clock
    assert isinstance(clock, ManualClock)
    clock.advance(timedelta(minutes=30))
    out = await released.say(f"@sam #review !update A-1 {NEW_TEXT}")

    edits = edits_by_place(out)
    assert {place: len(lines) for place, lines in edits.items()} == dict.fromkeys(RELEASED_TO, 1)
    for place in RELEASED_TO:
        copy = edits[place][0]
        assert copy.startswith(f"{place} (edited) [TLP:AMBER]")
        assert "A-1 · Substation surveillance (updated)" in copy  # the title stays
        assert NEW_TEXT in copy and OLD_TEXT not in copy
        assert "Updated 2026-11-25 10:30 EST" in copy
        assert "Feedback: !feedback A-1 useful|not-useful" in copy
    assert not lines_for(out, "#transit")  # the uncleared partner hears nothing of it
    answer = lines_for(out, "@sam")
    assert len(answer) == 1 and "A-1 updated. 4 copies edited in place" in answer[0]

    db = released.bot.db
    async with db.read() as conn:
        row = (await conn.execute(select(alerts))).one()
        audit = [e for e in await load_audit(conn) if e.action == "alert.updated"]
    # The new narrative; where it happened stays, as released (the analyst didn't retype it).
    assert (
        row.body == f"{NEW_TEXT}\nLocation: 5th & Main" and row.title == "Substation surveillance"
    )
    assert row.version == 3  # released, then updated
    assert len(audit) == 1 and audit[0].actor == "console:sam" and audit[0].subject == "A-1"
    assert "console:#transit" not in [r[0] for r in await outbox_snapshot(db)]

    log = (await released.say("@sam #review !alert A-1"))[0]
    assert NEW_TEXT in log and "RELEASED" in log
    # Each copy says what the partner reads there now.
    assert (
        "console:#metro-pd (metro-pd) — sent 2026-11-25 10:00 EST, updated 2026-11-25 10:30 EST"
        in log
    )


async def test_an_update_that_gives_a_fact_again_replaces_it(released: ConsoleHarness) -> None:
    out = await released.say(
        f"@sam #review !update A-1 {NEW_TEXT}\nLocation: 5th & Elm\nWhen: 23:40 last night"
    )
    copy = edits_by_place(out)["#metro-pd"][0]
    assert "Location: 5th & Elm" in copy and "When: 23:40 last night" in copy
    assert "5th & Main" not in copy


@pytest.mark.parametrize(
    "typed",
    [
        f"{NEW_TEXT} | location: 5th & Elm",  # as a tip's field, on the one line a command has
        f"{NEW_TEXT}; Location: 5th & Elm",
        f"{NEW_TEXT}. LOCATION: 5th & Elm",  # in passing: still never two locations
    ],
)
async def test_a_fact_given_on_one_line_replaces_the_old_one(
    released: ConsoleHarness, typed: str
) -> None:
    out = await released.say(f"@sam #review !update A-1 {typed}")
    copy = edits_by_place(out)["#metro-pd"][0]
    assert "5th & Elm" in copy and "5th & Main" not in copy


async def test_a_second_update_edits_each_copy_once_more(released: ConsoleHarness) -> None:
    await released.say("@sam #review !update A-1 first correction")
    out = await released.say("@sam #review !update A-1 second correction")
    edits = edits_by_place(out)
    assert {place: len(lines) for place, lines in edits.items()} == dict.fromkeys(RELEASED_TO, 1)
    assert all("second correction" in e[0] for e in edits.values())


async def test_only_the_releaser_or_a_supervisor_may_change_an_alert(db: Database) -> None:
    h = ConsoleHarness(db, policy=alert_policy(), clock=ManualClock(START))
    await h.say(TIP)
    await h.say("@ana #review !claim T-1")
    await h.say("@ana #review !approve T-1 to:metro-pd confirm")
    before = await outbox_snapshot(db)

    for command in (f"!update A-1 {NEW_TEXT}", f"!retract A-1 {REASON}"):
        out = await h.say(f"@ali #review {command}")
        assert len(out) == 1 and out[0].startswith("@ali ")
        assert "Only console:ana, who released A-1, or a supervisor may" in out[0]
        for who, where in (("olly", "#tips"), ("pat", "#metro-pd")):
            out = await h.say(f"@{who} {where} {command}")
            assert len(out) == 1 and out[0].startswith(f"@{who} ")
            assert "Only the center's analysts and supervisors may do that." in out[0]
    assert await outbox_snapshot(db) == before

    out = await h.say("@ana #review !update A-1 the releaser may")
    assert set(edits_by_place(out)) == {"#metro-pd", "#metro-pd-internal"}
    out = await h.say("@sam #review !update A-1 and so may a supervisor")
    assert set(edits_by_place(out)) == {"#metro-pd", "#metro-pd-internal"}


BAD = [
    ("!update A-9 new text", "There is no A-9"),
    ("!retract A-9 wrong", "There is no A-9"),
    ("!update A-1", "Please add the new text. Usage: !update A-1 <new text>"),
    ("!retract A-1", "Please add the reason. Usage: !retract A-1 <reason>"),
    ("!update A-4", "Please add the new text. Usage: !update A-4 <new text>"),
    ("!update T-1 text", "is not an alert id"),
    ("!retract", "Which alert?"),
]


@pytest.mark.parametrize(("command", "expected"), BAD, ids=[b[0] for b in BAD])
async def test_bad_changes_answer_politely_and_change_nothing(
    released: ConsoleHarness, command: str, expected: str
) -> None:
    db = released.bot.db
    before = await outbox_snapshot(db)
    out = await released.say(f"@sam #review {command}")
    assert len(out) == 1 and out[0].startswith("@sam ") and expected in out[0], out
    assert await outbox_snapshot(db) == before


# --- retract ----------------------------------------------------------------------------


async def test_retract_turns_every_copy_into_a_notice_that_keeps_the_marking(
    released: ConsoleHarness,
) -> None:
    out = await released.say(f"@sam #review !retract A-1 {REASON}")

    edits = edits_by_place(out)
    [card] = edits.pop("#review")  # the tip's outcome says what became of its alert
    assert "Outcome: released as alert A-1; retracted 2026-11-25 10:00 EST: Source recanted" in card
    assert {place: len(lines) for place, lines in edits.items()} == dict.fromkeys(RELEASED_TO, 1)
    for place in RELEASED_TO:
        notice = edits[place][0]
        assert notice.startswith(f"{place} (edited) [TLP:AMBER]")
        assert "A-1 RETRACTED\n" in notice
        assert "Retracted: Source recanted. Do not act on it; delete local copies." in notice
        assert OLD_TEXT not in notice and "Substation surveillance" not in notice
        assert "5th & Main" not in notice and "!feedback" not in notice
    assert not lines_for(out, "#transit")
    assert "A-1 retracted. 4 copies edited in place" in lines_for(out, "@sam")[0]

    db = released.bot.db
    async with db.read() as conn:
        row = (await conn.execute(select(alerts))).one()
        actions = [e.action for e in await load_audit(conn)]
    assert row.state == "retracted" and row.retracted_by == "console:sam"
    assert row.retracted_reason == REASON and row.retracted_at is not None
    assert actions[-1] == "alert.retracted"

    log = (await released.say("@sam #review !alert A-1"))[0]
    assert "RETRACTED" in log and f"Retracted: 2026-11-25 10:00 EST by console:sam: {REASON}" in log
    assert (
        "console:#metro-pd (metro-pd) — sent 2026-11-25 10:00 EST, now the retraction notice" in log
    )


async def test_retract_is_refused_twice_and_update_after_it(released: ConsoleHarness) -> None:
    await released.say(f"@sam #review !retract A-1 {REASON}")
    db = released.bot.db
    before = await outbox_snapshot(db)
    out = await released.say("@sam #review !retract A-1 again")
    assert len(out) == 1 and "A-1 was already retracted by console:sam" in out[0]
    out = await released.say(f"@sam #review !update A-1 {NEW_TEXT}")
    assert len(out) == 1 and "A-1 was retracted and can't be updated" in out[0]
    # The way forward it names is one that works: the tip itself is closed.
    assert "file it as a new tip that mentions T-1, and approve that." in out[0]
    assert await outbox_snapshot(db) == before


def slack_metro_policy() -> Policy:
    """metro-pd reached through Slack, where the test decides what happens to deliveries."""
    policy = alert_policy()
    return policy.model_copy(
        update={
            "partners": [
                p.model_copy(update={"channels": ["slack:C0METRO"], "internal_channels": []})
                if p.id == "metro-pd"
                else p
                for p in policy.partners
            ]
        }
    )


async def slack_harness(
    db: Database, failure: DeliveryError
) -> tuple[ConsoleHarness, PlatformDouble]:
    slack = PlatformDouble(platform="slack")
    h = ConsoleHarness(
        db,
        policy=slack_metro_policy(),
        clock=ManualClock(START),
        extra_senders={"slack": slack},
    )
    await h.say(TIP)
    await h.say("@ana #review !claim T-1")
    slack.fail_next(failure)
    out = await h.say("@ana #review !approve T-1 to:metro-pd confirm")
    assert any("released as A-1" in line for line in out)
    assert slack.received == []
    return h, slack


async def test_a_copy_still_waiting_leaves_as_the_notice_not_the_alert(db: Database) -> None:
    h, slack = await slack_harness(db, TemporaryFailure("Slack is having a moment"))
    out = await h.say(f"@ana #review !retract A-1 {REASON}")
    # Not sent yet: it leaves as the notice, and the answer says so rather than "edited".
    assert lines_for(out, "@ana") == [
        "@ana A-1 retracted. 1 copy not sent yet goes out as the notice (slack:C0METRO)."
    ]

    clock = h.bot.core.clock
    assert isinstance(clock, ManualClock)
    clock.advance(timedelta(minutes=5))
    await h.bot.drain(10.0)
    # One message, the notice: the edit was folded into the post that had not left yet.
    assert [(r.target, r.op) for r in slack.received] == [("slack:C0METRO", "post")]
    assert "Retracted: Source recanted" in slack.received[0].text
    assert OLD_TEXT not in slack.received[0].text


async def test_a_copy_still_waiting_leaves_with_the_updated_text(db: Database) -> None:
    h, slack = await slack_harness(db, TemporaryFailure("Slack is having a moment"))
    await h.say(f"@ana #review !update A-1 {NEW_TEXT}")
    clock = h.bot.core.clock
    assert isinstance(clock, ManualClock)
    clock.advance(timedelta(minutes=5))
    await h.bot.drain(10.0)
    assert [r.op for r in slack.received] == ["post"]
    assert slack.received[0].text == f"{NEW_TEXT}\nLocation: 5th & Main"


async def test_a_held_copy_is_rewritten_to_the_notice(db: Database) -> None:
    h, _ = await slack_harness(db, HoldDelivery("the app was removed from the workspace"))
    await h.say(f"@ana #review !retract A-1 {REASON}")
    rows = [r for r in await outbox_snapshot(db) if r[0] == "slack:C0METRO"]
    # Still one held post (no edit queued behind it, which would wait forever), and if a
    # person lets it go, it carries the notice and nothing of the alert.
    assert [(target, op, state) for target, op, state, _ in rows] == [
        ("slack:C0METRO", "post", "held")
    ]
    payload = rows[0][3]
    assert isinstance(payload, dict)
    assert payload["header"] == "A-1 RETRACTED" and "Retracted: Source recanted" in payload["text"]
    assert OLD_TEXT not in str(payload)


async def test_retracting_a_scheduled_alert_just_cancels_it(db: Database) -> None:
    clock = ManualClock(START)
    h = ConsoleHarness(db, policy=alert_policy(), clock=clock)
    await h.say(TIP)
    await h.say("@ana #review !claim T-1")
    out = await h.say("@ana #review !approve T-1 to:metro-pd at:2026-11-25T12:00 confirm")
    assert any("scheduled for" in line for line in out), out

    out = await h.say(f"@ana #review !retract A-1 {REASON}")
    assert lines_for(out, "@ana") == [
        "@ana A-1 retracted. Nothing had been sent yet, so it is simply cancelled."
    ]
    [card] = edits_by_place(out)["#review"]
    # It never went out: the card says when it was to go and when it was cancelled.
    assert (
        "Outcome: approved as alert A-1, scheduled for 2026-11-25 12:00 EST; cancelled "
        "2026-11-25 10:00 EST: Source recanted" in card
    )
    status = await h.say("@ana #review !status T-1")
    assert (
        "Outcome: approved as alert A-1, scheduled for 2026-11-25 12:00 EST; cancelled" in status[0]
    )
    log = (await h.say("@ana #review !alert A-1"))[0]
    assert "Copies: console:#metro-pd (metro-pd) — cancelled: retracted before its time" in log

    clock.advance(timedelta(hours=3))
    assert await release_due_alerts(h.bot.core) == 0
    await h.bot.drain(10.0)
    async with db.read() as conn:
        sent = (
            await conn.execute(select(outbox.c.target).where(outbox.c.message_key == "alert:1"))
        ).all()
        state = await conn.scalar(select(alerts.c.state))
    assert sent == [] and state == "retracted"


async def test_a_copy_waiting_for_a_digest_is_shown_withheld_once_retracted(db: Database) -> None:
    h = ConsoleHarness(db, policy=alert_policy(), clock=ManualClock(START))
    await h.say(TIP)
    await h.say("@ana #review !claim T-1")
    await h.say("@ana #review !approve T-1 tlp:green to:metro-pd,transit confirm")
    out = await h.say(f"@ana #review !retract A-1 {REASON}")
    assert lines_for(out, "@ana") == [
        "@ana A-1 retracted. 2 copies edited in place (console:#metro-pd, "
        "console:#metro-pd-internal). 1 copy waiting for a digest won't go (console:#transit)."
    ]
    # The officer was told the tip became an alert; they hear that it no longer stands.
    assert lines_for(out, "@olly") == [
        "@olly Alert A-1, made from your tip T-1, was retracted: Source recanted"
    ]
    log = (await h.say("@ana #review !alert A-1"))[0]
    assert "Timing: now" in log
    assert (
        "console:#transit (transit) — withheld: retracted before the partner's digest, "
        "so it never goes" in log
    )
    assert "waiting for the partner's next digest" not in log


async def released_then(
    db: Database, tmp_path: Path, approve: str, *, by: str = "@sam"
) -> tuple[ConsoleHarness, Path]:
    """T-1 filed, claimed and approved with ``approve`` by ``by``; the policy in a file,
    so that a test can reload an edited one."""
    path = tmp_path / "policy.toml"
    path.write_text(ALERT_POLICY)
    h = ConsoleHarness(db, policy=alert_policy(), clock=ManualClock(START), policy_path=path)
    await h.say(TIP)
    await h.say("@ana #review !claim T-1")
    await h.say(f"{by} #review {approve}")
    return h, path


async def listed_in_transits_digest(
    db: Database, tmp_path: Path, *, by: str = "@ana"
) -> tuple[ConsoleHarness, Path]:
    """A-1 at TLP:GREEN for transit only, listed in transit's 07:00 digest, which went out."""
    h, path = await released_then(db, tmp_path, "!approve T-1 tlp:green to:transit confirm", by=by)
    clock = h.bot.core.clock
    assert isinstance(clock, ManualClock)
    clock.advance(timedelta(days=1))  # past transit's 07:00 digest
    await send_digests(h.bot.core)
    await h.bot.drain(10.0)
    return h, path


async def reloaded(h: ConsoleHarness, path: Path, policy_text: str) -> None:
    path.write_text(policy_text)  # noqa: ASYNC240  (a small file, before the bot reads it)
    assert "Policy reloaded" in (await h.say("@sam #review !reload"))[0]


async def test_retract_edits_a_digest_that_listed_the_alert(db: Database, tmp_path: Path) -> None:
    h, _ = await listed_in_transits_digest(db, tmp_path)

    out = await h.say(f"@ana #review !retract A-1 {REASON}")
    edits = edits_by_place(out)
    assert sorted(edits) == ["#review", "#transit"] and len(edits["#transit"]) == 1
    assert "A-1 · TLP:GREEN · RETRACTED — do not act on it." in edits["#transit"][0]
    assert OLD_TEXT not in edits["#transit"][0]


async def test_an_update_edits_a_digest_that_listed_the_alert_and_says_so(
    db: Database, tmp_path: Path
) -> None:
    h, _ = await listed_in_transits_digest(db, tmp_path)

    out = await h.say(f"@ana #review !update A-1 {NEW_TEXT}")
    [digest] = edits_by_place(out)["#transit"]
    assert "A-1 · TLP:GREEN · Man photographing the substation fence · UPDATED" in digest
    # The fact line stays a line of its own, as on a copy of its own.
    assert f"{NEW_TEXT}\n    Location: 5th & Main" in digest
    assert lines_for(out, "@ana") == [
        "@ana A-1 updated. 1 digest listing it edited (console:#transit)."
    ]


async def test_an_update_after_a_reload_withdraws_the_alert_from_a_digest(
    db: Database, tmp_path
) -> None:
    h, path = await listed_in_transits_digest(db, tmp_path)
    await reloaded(h, path, ALERT_POLICY.replace('max_tlp = "GREEN"', 'max_tlp = "CLEAR"'))

    out = await h.say(f"@ana #review !update A-1 {NEW_TEXT}")
    [digest] = edits_by_place(out)["#transit"]
    assert "A-1 · TLP:GREEN · WITHDRAWN from here" in digest
    assert NEW_TEXT not in digest and OLD_TEXT not in digest


# A reload between release and update: metro-pd's clearance lowered below the alert's
# AMBER, or its internal channel handed to transit (cleared to GREEN only).
LOWERED = {
    "clearance lowered": (
        'max_tlp = "AMBER"\ncaveats = ["LES"]\nchannels = ["console:#metro-pd"]',
        'max_tlp = "GREEN"\ncaveats = ["LES"]\nchannels = ["console:#metro-pd"]',
        ("#metro-pd", "#metro-pd-internal"),
    ),
    "channel handed over": (
        'internal_channels = ["console:#metro-pd-internal"]\n',
        "",
        ("#metro-pd-internal",),
    ),
}


@pytest.mark.parametrize("change", LOWERED)
async def test_an_update_after_a_reload_goes_only_where_the_policy_now_clears_it(
    db: Database, tmp_path, change: str
) -> None:
    old, new, withdrawn = LOWERED[change]
    path = tmp_path / "policy.toml"
    path.write_text(ALERT_POLICY)
    h = ConsoleHarness(db, policy=alert_policy(), clock=ManualClock(START), policy_path=path)
    await h.say(TIP)
    await h.say("@ana #review !claim T-1")
    await h.say("@sam #review !approve T-1 confirm title: Substation surveillance")
    changed = ALERT_POLICY.replace(old, new, 1)
    if change == "channel handed over":
        changed = changed.replace(
            'channels = ["console:#transit"]',
            'channels = ["console:#transit", "console:#metro-pd-internal"]',
        )
    assert changed != ALERT_POLICY
    path.write_text(changed)
    assert "Policy reloaded" in (await h.say("@sam #review !reload"))[0]

    out = await h.say(f"@sam #review !update A-1 {NEW_TEXT}")

    edits = edits_by_place(out)
    assert set(edits) == set(RELEASED_TO)
    for place in RELEASED_TO:
        [copy] = edits[place]
        assert copy.startswith(f"{place} (edited) [TLP:AMBER]")
        if place in withdrawn:
            # The new text never reaches a place no longer cleared; the old one is gone.
            assert "A-1 WITHDRAWN from here" in copy
            assert NEW_TEXT not in copy and OLD_TEXT not in copy
        else:
            assert NEW_TEXT in copy
    [answer] = lines_for(out, "@sam")
    gone = ", ".join(f"console:{p}" for p in withdrawn)
    assert f"Withdrawn, since the policy no longer clears them for A-1: {gone}" in answer
    async with db.read() as conn:
        entry = (await load_audit(conn))[-1]
    assert entry.action == "alert.updated"
    assert entry.details["withdrawn"] == [f"console:{p}" for p in withdrawn]


async def test_updating_a_scheduled_alert_sends_the_new_text_at_its_time(db: Database) -> None:
    clock = ManualClock(START)
    h = ConsoleHarness(db, policy=alert_policy(), clock=clock)
    await h.say(TIP)
    await h.say("@ana #review !claim T-1")
    await h.say("@ana #review !approve T-1 to:metro-pd at:2026-11-25T12:00 confirm")
    out = await h.say(f"@ana #review !update A-1 {NEW_TEXT}")
    assert out == ["@ana A-1 updated. Nothing had been sent yet; it goes out with the new text."]

    clock.advance(timedelta(hours=3))
    assert await release_due_alerts(h.bot.core) == 1
    before = len(h.printed)
    await h.bot.drain(10.0)
    copy = lines_for(h.printed[before:], "#metro-pd")
    # The title (from the tip's summary) stays; the text is the new one.
    assert len(copy) == 1 and copy[0].split("\n")[2].strip() == NEW_TEXT


async def test_a_channel_given_to_another_cleared_partner_is_withdrawn_not_updated(
    db: Database, tmp_path
) -> None:
    """Its new owner may see AMBER, but the copy there was delivered for metro-pd, whose
    people no longer read that channel: the new text goes to neither."""
    h, path = await released_then(db, tmp_path, "!approve T-1 confirm title: Substation")
    moved = ALERT_POLICY.replace(
        'internal_channels = ["console:#metro-pd-internal"]\n', "", 1
    ).replace(
        'internal_channels = ["console:#state-police-intel"]',
        'internal_channels = ["console:#state-police-intel", "console:#metro-pd-internal"]',
    )
    await reloaded(h, path, moved)
    out = await h.say(f"@sam #review !update A-1 {NEW_TEXT}")
    [copy] = edits_by_place(out)["#metro-pd-internal"]
    assert "A-1 WITHDRAWN from here" in copy and NEW_TEXT not in copy
    # The dissemination log says what that place holds now.
    log = (await h.say("@sam #review !alert A-1"))[0]
    assert (
        "console:#metro-pd-internal (metro-pd) — sent 2026-11-25 10:00 EST, withdrawn "
        "2026-11-25 10:00 EST (the policy no longer clears it)" in log
    )


async def test_a_partner_removed_by_a_reload_still_gets_the_retraction_in_its_digest(
    db: Database, tmp_path
) -> None:
    h, path = await listed_in_transits_digest(db, tmp_path, by="@sam")
    start = ALERT_POLICY.index('[[partners]]\nid = "transit"')
    end = ALERT_POLICY.index("[[partners]]", start + 1)
    await reloaded(h, path, ALERT_POLICY[:start] + ALERT_POLICY[end:])

    out = await h.say(f"@sam #review !retract A-1 {REASON}")
    [digest] = edits_by_place(out)["#transit"]
    assert "A-1 · TLP:GREEN · RETRACTED — do not act on it." in digest
    assert "1 digest listing it edited (console:#transit)" in lines_for(out, "@sam")[0]


async def test_after_a_reload_a_retraction_tells_an_uncleared_place_no_reason(
    db: Database, tmp_path
) -> None:
    h, path = await released_then(db, tmp_path, "!approve T-1 confirm title: Substation")
    await reloaded(
        h,
        path,
        ALERT_POLICY.replace(
            'max_tlp = "AMBER"\ncaveats = ["LES"]', 'max_tlp = "GREEN"\ncaveats = ["LES"]', 1
        ),
    )
    out = await h.say("@sam #review !retract A-1 The van belongs to agent Smith")
    edits = edits_by_place(out)
    [uncleared] = edits["#metro-pd"]
    assert "A-1 RETRACTED" in uncleared and "Retracted. Do not act on it" in uncleared
    assert "agent Smith" not in uncleared
    assert "agent Smith" in edits["#state-police"][0]  # still cleared: told why


async def test_the_officer_hears_of_a_red_retraction_but_not_its_reason(
    db: Database, tmp_path
) -> None:
    h, _ = await released_then(db, tmp_path, "!approve T-1 tlp:red confirm")
    out = await h.say("@sam #review !retract A-1 The informant was burned")
    assert lines_for(out, "@olly") == [
        "@olly Alert A-1, made from your tip T-1, was retracted: the reason stays with the "
        "center (TLP:RED)"
    ]
    status = await h.say_text("@olly @bot !status T-1")
    assert "informant" not in status
