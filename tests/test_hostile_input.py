"""Hostile input on every path a person (or someone posing as Slack) can reach: huge,
malformed and tricky text, mention and link injection, SQL-looking text, forged button
clicks and user ids, forged and replayed Slack requests.

Every input gets a clear answer or a safe result: never the "went wrong on my side"
answer or an ERROR log (the dispatcher logs what it didn't expect), never a change it
shouldn't cause (tips, notes, alerts, audit and cards/alerts compared before and after),
and never markup that escapes into what the bot posts: on Slack no raw ``<`` in any
mrkdwn text (so no ``<!channel>``, ``<@U…>`` or ``<https://…|label>``) and no
``link_names``/``parse`` that would turn a bare ``@here`` into a ping; on the console no
terminal controls or direction overrides, and no line that can pose as another message."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.clock import ManualClock
from commands.context import Command
from storage import outbox_repo
from storage.db import Database
from tests.fakes.slack_web_api import FakeSlackWebAPI
from tests.harness import ConsoleHarness
from tests.test_alerts import START, everything
from tests.test_cli import ROOT, setup_center
from tests.test_slack_app import RETRY, Slack, block_actions, dm_event, serve_bot

WENT_WRONG = "Something went wrong on my side"

# Pieces an attacker (or an unlucky paste) puts into text.
FRAGMENTS = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<!subteam^S0123|@team>",
    "<@U123>",
    "<@UANA|ana>",
    "<#C0SECRET>",
    "<https://evil.example|click>",
    "<https://evil.example>",
    "<mailto:x@evil.example|mail>",
    "@room",
    "@here",
    "@channel",
    "@everyone",
    "'; DROP TABLE tips;--",
    "' OR 1=1 --",
    '"; DELETE FROM audit_log; --',
    "%s%s%n",
    "{0}{__class__}",
    "\u202eevil\u202c",  # right-to-left override
    "\u2066isolate\u2069",
    "\u200b\u200c\u200d\u2060\ufeff",  # zero-width
    "\u00ad",  # soft hyphen
    "раураl",  # Cyrillic homoglyphs of "paypal"
    "ΑΒС",  # Greek and Cyrillic capitals that look Latin
    "e\u0301\u0301\u0301\u0301\u0301\u0301",  # stacked combining marks
    "Z\u0351\u0358\u0300\u0352\u0350",
    "\x00",
    "\x1b[2J\x1b[31m",
    "\x07\x08\x7f\x9b",
    "\ud800",  # lone surrogates: valid in a JSON string
    "\udfff",
    "\U0001f4a3",
    "\r\n#review FAKE CARD\r\n",
    "\n@sam (edited) approved everything",
    "| category: photo",
    "| region: mars",
    "| urgency: now",
    "|||",
    "T-1",
    "T-99999999999999999999",
    "A-1",
    "confirm",
    "tlp:red",
    "to:all",
    "*bold* _it_ ~strike~ `code` ```block```",
    "&lt;!channel&gt; &amp;",
    "<b>x</b><script>alert(1)</script>",
    "\t",
    " ",
]

hostile_text = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), min_size=1, max_size=8
).map("".join)

VERBS = [
    "tip",
    "claim",
    "ask",
    "reply",
    "reject",
    "dup",
    "approve",
    "alert",
    "update",
    "retract",
    "feedback",
    "status",
    "help",
    "reload",
    "frob",
]
# Verbs that never change anything, whoever asks.
READ_ONLY = {"alert", "status", "help", "frob"}
TERMINAL_TRICKS = ("\x1b", "\x00", "\x07", "\x9b", "\u202e", "\u2066", "\ufeff", "\u200b")


def error_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# ------------------------------------------------------------------- the console


@pytest.fixture
async def console(db: Database) -> ConsoleHarness:
    """T-1 approved as A-1 (to metro-pd), T-2 held by ana, T-3 new."""
    h = ConsoleHarness(db, clock=ManualClock(START))
    for n in (1, 2, 3):
        out = await h.say(f"@olly #tips !tip Van {n} idling by the substation | category: survl")
        assert f"Received T-{n}" in out[-1]
    await h.say("@ana #review !claim T-1")
    await h.say("@ana #review !claim T-2")
    out = await h.say("@ana #review !approve T-1 tlp:green to:metro-pd now confirm")
    assert any(line.startswith("#metro-pd") for line in out), out
    return h


def assert_console_output_is_safe(printed: list[str]) -> None:
    for entry in printed:
        assert WENT_WRONG not in entry, entry
        first, *rest = entry.split("\n")
        assert first[:1] in ("#", "@"), entry
        # Whatever a person wrote, it can't start a line of its own.
        assert all(line.startswith("    ") for line in rest), entry
        assert not any(trick in entry for trick in TERMINAL_TRICKS), repr(entry)
        assert not any("\ud800" <= ch <= "\udfff" for ch in entry), repr(entry)


SPEAKERS = [
    ("console:olly", "console:#tips", False),  # an officer in intake
    ("console:olly", "console:olly", True),  # an officer's DM
    ("console:ana", "console:#review", False),  # analyst holding T-2
    ("console:ali", "console:#review", False),  # analyst holding nothing
    ("console:sam", "console:#review", False),  # supervisor and admin
    ("console:mallory", "console:#review", False),  # nobody the policy knows
    ("console:mallory", "console:#metro-pd", False),
]


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    speaker=st.sampled_from(SPEAKERS),
    verb=st.sampled_from(VERBS),
    prefix=st.sampled_from(["!", " !", "!!", "! ", ""]),
    ref=st.sampled_from(["", "T-1 ", "T-2 ", "T-3 ", "A-1 ", "T-2 T-3 "]),
    text=hostile_text,
)
async def test_console_commands_with_hostile_text_are_answered_safely(
    console: ConsoleHarness,
    caplog: pytest.LogCaptureFixture,
    speaker: tuple[str, str, bool],
    verb: str,
    prefix: str,
    ref: str,
    text: str,
) -> None:
    actor, channel, is_dm = speaker
    caplog.clear()
    before = await everything(console.bot.db)
    printed_before = len(console.printed)
    await console.bot.handle(
        Command(actor=actor, channel=channel, text=f"{prefix}{verb} {ref}{text}", is_dm=is_dm)
    )
    await console.bot.drain(10)
    out = console.printed[printed_before:]
    assert_console_output_is_safe(out)
    assert error_logs(caplog) == []
    if verb in READ_ONLY or (actor == "console:mallory" and channel != "console:#tips"):
        assert await everything(console.bot.db) == before


async def test_huge_and_binary_console_input_is_refused_cleanly(
    console: ConsoleHarness, caplog: pytest.LogCaptureFixture
) -> None:
    before = await everything(console.bot.db)
    for text in (
        "!tip " + "A" * 100_000,
        "!tip " + "<!channel>" * 10_000,
        "!ask T-2 " + "\u202e" * 50_000 + "x" * 6_000,
        "!tip " + "e" + "\u0301" * 100_000,
        "!" + "\x00" * 100_000,
    ):
        caplog.clear()
        printed = len(console.printed)
        await console.bot.handle(Command(actor="console:olly", channel="console:#tips", text=text))
        await console.bot.drain(10)
        out = console.printed[printed:]
        assert_console_output_is_safe(out)
        assert error_logs(caplog) == []
        assert len(out) == 1 and out[0].startswith("@olly "), out
        assert any(
            clear in out[0] for clear in ("too long", "Please describe", "I don't know “!”")
        ), out[0][:300]
    assert await everything(console.bot.db) == before


def test_the_console_process_takes_raw_hostile_bytes_and_exits_zero(tmp_path: Path) -> None:
    """`fusionbot console` reading a script with bytes that aren't UTF-8, NULs, escape
    sequences, direction overrides, a line that isn't in the console format and a 100 kB
    line: every line is answered or reported, nothing crashes, and what it prints can't
    rewrite the terminal or pose as another message."""
    script = b"".join(
        [
            b"@olly #tips !tip bad bytes \xff\xfe\xc0 here | category: photo\n",
            b"@olly #tips !tip nul \x00 esc \x1b[2J rtl \xe2\x80\xae evil\n",
            b"@ol\xffly #tips !tip name with a bad byte\n",
            b"@olly #tips !tip " + b"A" * 100_000 + b"\n",
            b"@olly #tips !tip <!channel> '; DROP TABLE tips;-- \xcc\x81\xcc\x81\n",
            b"@mallory #review !approve T-1 tlp:red to:all now confirm\n",
            b"@olly @bot !status\n",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-m", "bot", "console"],
        input=script,
        capture_output=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), **setup_center(tmp_path)},
        timeout=120,
        check=False,
    )
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, err[-3000:]
    assert "Traceback" not in err and WENT_WRONG not in out, err[-3000:]
    messages = re.split(r"\n(?=[#@])", out.strip())
    assert_console_output_is_safe(messages)
    receipts = [m for m in messages if m.startswith("@olly Received T-")]
    assert [m.split()[2] for m in receipts] == ["T-1", "T-2", "T-3"], receipts
    assert "That message is too long (100,005 characters)" in out
    assert "line 3: expected: @<name> #<channel> <text>" in err
    assert "@mallory Only the center's analysts" in out
    assert messages[-1].startswith("@olly ") and "T-3" in messages[-1]  # !status answered


# ------------------------------------------------------------------------ Slack


@pytest.fixture
async def slack_bot(db: Database) -> AsyncIterator[tuple[Any, Slack, FakeSlackWebAPI]]:
    """The real bolt app, bot and Slack sender in this process, against the fake.
    T-1 filed by UOLLY and claimed by UANA; T-2 filed by UANA herself (four-eyes)."""
    async with FakeSlackWebAPI() as fake:
        async for bot, slack in serve_bot(fake, db):
            await slack.command(
                "/tip", "Van idling by the gate", user="UOLLY", channel="C0TIPS", trigger_id="s.1"
            )
            await slack.command(
                "/fusion", "claim T-1", user="UANA", channel="C0REVIEW", trigger_id="s.2"
            )
            await slack.post(
                dm_event("tip Drone over the reservoir", user="UANA", event_id="Ev0S3"),
                content_type="application/json",
            )
            await slack.command(
                "/fusion", "claim T-2", user="UANA", channel="C0REVIEW", trigger_id="s.4"
            )
            await bot.drain(10)
            yield bot, slack, fake


SENT_METHODS = ("chat.postMessage", "chat.update", "chat.postEphemeral")


def _mrkdwn_texts(value: Any) -> list[str]:
    """Every mrkdwn text in a block structure (plain_text is shown as typed: harmless)."""
    found: list[str] = []
    if isinstance(value, dict):
        if value.get("type") == "mrkdwn" and isinstance(value.get("text"), str):
            found.append(value["text"])
        for item in value.values():
            found.extend(_mrkdwn_texts(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_mrkdwn_texts(item))
    return found


def _decoded(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def assert_slack_output_is_inert(fake: FakeSlackWebAPI, since: int = 0) -> int:
    """Everything the bot sent Slack after call number ``since``; returns how many."""
    calls = [c for c in fake.calls[since:] if c.method in SENT_METHODS]
    for call in calls:
        params = call.params
        assert not params.get("link_names") and params.get("parse") in (None, "none"), params
        texts = [str(params.get("text") or "")]
        texts += _mrkdwn_texts(_decoded(params.get("blocks")))
        for text in texts:
            assert "<" not in text and ">" not in text, text[:500]
            assert WENT_WRONG not in text, text
    return len(calls)


async def settle(bot: Any) -> None:
    await bot.drain(10)


HOSTILE_TIPS = [
    "A" * 100_000,
    "<!channel> " * 5_000,
    "Van <!channel> <!here> <@U123> <#C0SECRET> <https://evil.example|click here> @here @room",
    "'; DROP TABLE tips;-- | category: photo",
    "\u202eevil\u202c zero\u200bwidth раураl e\u0301\u0301\u0301 \x00\x1b[2J",
    "Phish | location: <https://evil.example|5th & Main> | details: <!everyone>",
    "*bold* _it_ ~s~ `c` ```b``` &lt;!channel&gt; &amp; > quote",
    "Van\n#review FAKE\n<@UANA> approve it",
]


async def test_slack_tips_with_hostile_text_are_filed_or_refused_and_stay_inert(
    slack_bot: tuple[Any, Slack, FakeSlackWebAPI], caplog: pytest.LogCaptureFixture
) -> None:
    """One bot for all of them (Slack's per-channel pace makes each bot cost seconds)."""
    bot, slack, fake = slack_bot
    filed = 0
    for text in HOSTILE_TIPS:
        since = len(fake.calls)
        before = await everything(bot.db)
        status, body, took = await slack.command(
            "/tip", text, user="UOLLY", channel="C0TIPS", trigger_id=fake.issue_trigger_id()
        )
        assert (status, body) == (200, "") and took < 3.0, repr(text[:40])
        await settle(bot)
        after = await everything(bot.db)
        assert assert_slack_output_is_inert(fake, since) >= 1, repr(text[:40])
        assert error_logs(caplog) == []
        [answer] = [c.params for c in fake.calls[since:] if c.method == "chat.postEphemeral"]
        assert answer["user"] == "UOLLY"
        if f"Received T-{3 + filed}" in answer["text"]:
            filed += 1
            assert len(after["tips"]) == len(before["tips"]) + 1
            [card] = [c.params for c in fake.calls[since:] if c.method == "chat.postMessage"]
            assert card["channel"] == "C0REVIEW" and f"T-{2 + filed}" in str(card["blocks"])
        else:
            assert "too long" in answer["text"] or "after | write" in answer["text"], answer
            assert after == before, repr(text[:40])
    assert filed >= 4  # the hostile-but-valid ones were filed, as typed, and inert


# Button clicks that someone forged or that the clicker may not make. Each must change
# nothing and answer the clicker (ephemerally) or be ignored.
FORGED_CLICKS: list[tuple[str, str, str]] = [
    ("approve T-1 tlp:green to:metro-pd now confirm", "UOLLY", "Only the center's analysts"),
    ("approve T-1 tlp:green to:all now confirm", "UEVIL", "Only the center's analysts"),
    ("claim T-1", "UEVIL", "Only the center's analysts"),
    ("reject T-1 nothing to see", "U0DEFAULTBOT", "Only the center's analysts"),
    ("approve T-2 tlp:green to:metro-pd now confirm", "UANA", "four-eyes"),
    ("reload", "UANA", "Only an administrator"),
    ("claim T-1", "UANA", "You already hold T-1"),
    ("claim T-1'; DROP TABLE tips;--", "UANA", "is not a tip id"),
    ("claim T-\ud800", "UANA", "is not a tip id"),
    ("<!channel> <@UANA>", "UANA", "I don't know"),
    ("\u202eclaim T-1", "UEVIL", "Only the center's analysts"),
    ("claim " + "T-1 " * 30_000, "UANA", "too long"),
    ("retract A-1 <!here>", "UOLLY", "Only the center's analysts"),
    ("feedback A-99 useful <!channel>", "UOLLY", "alerts your organisation received"),
    ("claim T-1", "U<!channel>", "Only the center's analysts"),
    ("claim T-1", "U\ud800EVIL", "Only the center's analysts"),
]


async def test_forged_button_clicks_change_nothing(
    slack_bot: tuple[Any, Slack, FakeSlackWebAPI], caplog: pytest.LogCaptureFixture
) -> None:
    bot, slack, fake = slack_bot
    for value, user, expected in FORGED_CLICKS:
        case = f"{user!r} clicking {value[:40]!r}"
        since = len(fake.calls)
        before = await everything(bot.db)
        status, _, took = await slack.interaction(
            block_actions(value, user=user, channel="C0REVIEW", trigger_id=fake.issue_trigger_id())
        )
        assert status == 200 and took < 3.0, case
        await settle(bot)
        assert await everything(bot.db) == before, case
        assert error_logs(caplog) == [], case
        assert_slack_output_is_inert(fake, since)
        answers = [c.params for c in fake.calls[since:] if c.method == "chat.postEphemeral"]
        assert len(answers) == 1, (case, answers)
        assert expected in str(answers[0].get("text")), (case, answers[0].get("text"))
        assert answers[0]["user"] == user.replace("\ud800", "\ufffd"), case  # only to them
        assert not [c for c in fake.calls[since:] if c.method == "chat.postMessage"], case


MALFORMED_CLICKS: list[dict[str, Any]] = [
    {"type": "block_actions", "user": {"id": "UANA"}, "actions": []},
    {"type": "block_actions", "user": {"id": "UANA"}, "actions": [{"action_id": "fusion:x"}]},
    {"type": "block_actions", "actions": [{"action_id": "fusion:claim", "value": "claim T-1"}]},
    {
        "type": "block_actions",
        "user": {"id": "UANA"},
        "channel": {"id": "C0REVIEW"},
        "actions": [{"action_id": "fusion:claim", "value": ["claim", "T-1"]}],
    },
    {
        "type": "block_actions",
        "user": {"id": "UANA"},
        "channel": {"id": "C0REVIEW"},
        "actions": [{"action_id": "fusion:claim", "value": 12345}],
    },
    {"type": "view_submission", "user": {"id": "UANA"}, "view": {"callback_id": "nope"}},
    {"type": "no_such_type"},
]


def our_error_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    """ERROR records from fusionbot's own code (bolt and aiohttp log their own)."""
    ours = ("adapters", "bot", "commands", "storage")
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.split(".")[0] in ours
    ]


async def still_serving(bot: Any, slack: Slack, fake: FakeSlackWebAPI) -> None:
    since = len(fake.calls)
    status, _, _ = await slack.command(
        "/fusion", "help", user="UANA", channel="C0REVIEW", trigger_id=fake.issue_trigger_id()
    )
    assert status == 200
    await settle(bot)
    assert [c for c in fake.calls[since:] if c.method == "chat.postEphemeral"]


async def test_malformed_signed_interactions_change_nothing(
    slack_bot: tuple[Any, Slack, FakeSlackWebAPI], caplog: pytest.LogCaptureFixture
) -> None:
    """Shapes Slack never sends, correctly signed (so only someone holding the signing
    secret could send them). bolt's own middleware answers some with a 500 and an ERROR
    of its own (``actions: []``, a view without its fields); nothing of ours fails,
    nothing changes, and the next request is served."""
    bot, slack, fake = slack_bot
    for payload in MALFORMED_CLICKS:
        since = len(fake.calls)
        before = await everything(bot.db)
        status, _, _ = await slack.interaction(payload)
        assert status in (200, 404, 500), payload
        await settle(bot)
        assert await everything(bot.db) == before, payload
        assert our_error_logs(caplog) == [], payload
        assert_slack_output_is_inert(fake, since)
    await still_serving(bot, slack, fake)


MALFORMED_BODIES = [
    ("payload=%7Bnot+json", 400),
    ("payload=%5B1%2C2%5D", 400),
    ("payload=", 400),
    ("\x00\xff garbage", 404),  # signed: bolt finds no listener; unsigned: 401
    ("command=%2Ftip&text=x", 200),  # a slash command without user or channel
    ("command=%2Ffusion&text=claim+T-1&user_id=UANA", 200),  # ...without channel
]


async def test_malformed_bodies_are_refused_quietly(
    slack_bot: tuple[Any, Slack, FakeSlackWebAPI], caplog: pytest.LogCaptureFixture
) -> None:
    """A body that isn't Slack's shape is refused before anything else (bolt parses it
    before checking the signature), without an ERROR traceback per request; a signed
    command without its user or channel is acknowledged and ignored."""
    bot, slack, fake = slack_bot
    for signed in (True, False):
        for body, expected in MALFORMED_BODIES:
            case = (body, "signed" if signed else "unsigned")
            since = len(fake.calls)
            before = await everything(bot.db)
            forged = {} if signed else {"signature": "v0=" + "0" * 64}
            status, _, _ = await slack.post(body, **forged)
            assert status == (expected if signed or expected == 400 else 401), case
            await settle(bot)
            assert await everything(bot.db) == before, case
            assert error_logs(caplog) == [], case
            assert not [c for c in fake.calls[since:] if c.method in SENT_METHODS], case
    await still_serving(bot, slack, fake)
    # Nothing was left queued for a place that doesn't exist ("slack:").
    async with bot.db.read() as conn:
        assert await outbox_repo.waiting_by_platform(conn) == {}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(["dm", "button", "fusion"]),
    user=st.sampled_from(["UOLLY", "UANA", "UEVIL"]),
    verb=st.sampled_from(VERBS),
    text=hostile_text,
)
async def test_slack_payloads_with_hostile_text_are_answered_safely(
    slack_bot: tuple[Any, Slack, FakeSlackWebAPI],
    caplog: pytest.LogCaptureFixture,
    kind: str,
    user: str,
    verb: str,
    text: str,
) -> None:
    """DM events carry JSON (lone surrogates and NULs allowed); buttons carry a command in
    their value; /fusion carries form-encoded text (no lone surrogates possible)."""
    bot, slack, fake = slack_bot
    caplog.clear()
    since = len(fake.calls)
    before = await everything(bot.db)
    command = f"{verb} {text}"
    if kind == "dm":
        status, _, _ = await slack.post(
            dm_event(f"!{command}", user=user, channel=f"D0{user}", event_id=f"Ev{time.time_ns()}"),
            content_type="application/json",
        )
    elif kind == "button":
        status, _, _ = await slack.interaction(
            block_actions(
                command, user=user, channel="C0REVIEW", trigger_id=fake.issue_trigger_id()
            )
        )
    else:
        form_safe = "".join(ch for ch in command if not "\ud800" <= ch <= "\udfff")
        status, _, _ = await slack.command(
            "/fusion", form_safe, user=user, channel="C0REVIEW", trigger_id=fake.issue_trigger_id()
        )
    assert status == 200
    await settle(bot)
    assert error_logs(caplog) == []
    assert_slack_output_is_inert(fake, since)
    if (user == "UEVIL" and kind != "dm") or verb in READ_ONLY:
        assert await everything(bot.db) == before


# --------------------------------------------------------- forged and replayed requests


async def test_forged_and_stale_requests_are_refused_by_the_real_bot(
    slack_bot: tuple[Any, Slack, FakeSlackWebAPI], caplog: pytest.LogCaptureFixture
) -> None:
    bot, slack, fake = slack_bot
    before = await everything(bot.db)
    now = int(time.time())
    forged = [
        {"signature": "v0=" + "0" * 64},
        {"signature": "v1=whatever"},
        {"headers": {"X-Slack-Signature": ""}},
        {"headers": {"X-Slack-Request-Timestamp": ""}},
        {"timestamp": now - 301},  # Slack's window is 5 minutes
        {"timestamp": now - 24 * 3600},
        {"timestamp": now + 301},  # from the future
        {"headers": {"X-Slack-Request-Timestamp": "not-a-number"}},
        {"headers": {"X-Slack-Request-Timestamp": "²³"}},
        {"headers": {"X-Slack-Request-Timestamp": "-1"}},
    ]
    statuses = []
    for options in forged:
        status, _, _ = await slack.command(
            "/tip",
            "Forged tip <!channel>",
            user="UOLLY",
            channel="C0TIPS",
            trigger_id=fake.issue_trigger_id(),
            **options,
        )
        statuses.append(status)
    # Signed for one body, sent with another: an approve smuggled into a harmless request.
    signed_for = "command=%2Ffusion&text=help&user_id=UANA&channel_id=C0REVIEW"
    from slack_sdk.signature import SignatureVerifier

    ts = str(now)
    signature = SignatureVerifier(slack.secret).generate_signature(timestamp=ts, body=signed_for)
    tampered = signed_for.replace("help", "approve+T-1+tlp%3Agreen+to%3Ametro-pd+now+confirm")
    status, _, _ = await slack.post(tampered, timestamp=now, signature=signature)
    statuses.append(status)
    # The same, signed with someone else's secret.
    other = Slack(slack.session, slack.url, secret="not-our-secret")
    status, _, _ = await other.interaction(
        block_actions("claim T-1", user="UANA", channel="C0REVIEW", trigger_id="f.1")
    )
    statuses.append(status)
    await settle(bot)
    assert statuses == [401] * len(statuses)
    assert await everything(bot.db) == before
    assert error_logs(caplog) == []


async def test_replayed_requests_are_handled_once(
    slack_bot: tuple[Any, Slack, FakeSlackWebAPI], caplog: pytest.LogCaptureFixture
) -> None:
    """A captured, correctly signed request sent again within the 5 minutes (with or
    without Slack's retry headers) does its work once."""
    bot, slack, fake = slack_bot
    tips_before = len((await everything(bot.db))["tips"])
    dm = dm_event("tip Replayed van at the depot", user="UOLLY", event_id="Ev0REPLAY")
    tip = ("/tip", "Replayed drone over the yard")
    tip_trigger = fake.issue_trigger_id()
    click = block_actions("claim T-3", user="UANA", channel="C0REVIEW", trigger_id="r.click")
    for attempt in range(3):
        headers = RETRY if attempt == 2 else None
        status, _, _ = await slack.post(dm, content_type="application/json", headers=headers)
        assert status == 200
        status, _, _ = await slack.command(
            *tip, user="UOLLY", channel="C0TIPS", trigger_id=tip_trigger, headers=headers
        )
        assert status == 200
        await settle(bot)
        if attempt == 0:
            await slack.interaction(click)  # T-3 exists now; claim it
        else:
            status, _, _ = await slack.interaction(click, headers=headers)
            assert status == 200
        await settle(bot)
    state = await everything(bot.db)
    assert len(state["tips"]) == tips_before + 2
    async with bot.db.read() as conn:
        from storage.audit_repo import load_audit

        claims = [e for e in await load_audit(conn, subject="T-3") if e.action == "tip.claimed"]
    assert len(claims) == 1
    receipts = [
        e for e in fake.ephemerals("C0TIPS") if "Replayed" in str(e) or "Received T-" in str(e)
    ]
    dm_channel = fake.dm_channel_id("UOLLY")
    dm_receipts = [m for m in fake.messages(dm_channel or "") if "Received" in str(m.get("text"))]
    assert len(dm_receipts) == 1
    assert receipts  # the /tip officer was answered
    assert error_logs(caplog) == []
