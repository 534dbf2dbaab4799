"""The real bolt app over HTTP: correctly signed requests in, neutral Commands out, modals
opened at a local fake of Slack's Web API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select

from adapters.slack.app import Handle, create_slack_app
from adapters.slack.http import start_http
from adapters.slack.modals import (
    APPROVE_CALLBACK,
    INPUT_CALLBACK,
    TIP_CALLBACK,
    approve_modal,
    input_modal,
    tip_modal,
)
from bot.app import FusionBot, build, platform_senders, slack_app
from bot.categories import CATEGORIES
from bot.policy_loader import parse_policy
from bot.settings import Settings
from commands.context import Command
from storage.db import Database
from storage.tables import handled_events, tips
from tests.fakes.slack_web_api import DEFAULT_BOT_TOKEN, DEFAULT_TEAM_ID, FakeSlackWebAPI
from tests.snapshots import outbox_targets

SECRET = "test-signing-secret"
TEAM = DEFAULT_TEAM_ID

SLACK_POLICY = """
[center]
name = "Test Fusion Center"
timezone = "America/New_York"
regions = ["north", "south", "downtown"]

[roles]
officers = ["*"]
analysts = ["slack:UANA"]
supervisors = []
admins = []

[[intake]]
channels = ["slack:C0TIPS"]

[[review]]
name = "general"
channels = ["slack:C0REVIEW"]
categories = ["*"]
"""


@dataclass
class Recorder:
    commands: list[Command] = field(default_factory=list)

    async def __call__(self, command: Command) -> bool:
        self.commands.append(command)
        return True


@dataclass
class Slack:
    """Sends requests to our /slack/events the way Slack signs them."""

    session: aiohttp.ClientSession
    url: str
    secret: str = SECRET

    async def post(
        self,
        body: str,
        *,
        content_type: str = "application/x-www-form-urlencoded",
        timestamp: int | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str, float]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        sig = signature or SignatureVerifier(self.secret).generate_signature(
            timestamp=ts, body=body
        )
        sent = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sig,
            **(headers or {}),
        }
        started = time.monotonic()
        async with self.session.post(self.url, data=body.encode(), headers=sent) as response:
            text = await response.text()
            return response.status, text, time.monotonic() - started

    async def command(
        self, name: str, text: str, *, user: str, channel: str, trigger_id: str, **kw: Any
    ) -> tuple[int, str, float]:
        body = urlencode(
            {
                "token": "legacy",
                "team_id": TEAM,
                "team_domain": "test",
                "channel_id": channel,
                "channel_name": channel.lower(),
                "user_id": user,
                "user_name": user.lower(),
                "command": name,
                "text": text,
                "api_app_id": "A0FAKEAPP01",
                "response_url": "https://hooks.slack.invalid/commands/1",
                "trigger_id": trigger_id,
            }
        )
        return await self.post(body, **kw)

    async def interaction(self, payload: dict[str, Any], **kw: Any) -> tuple[int, str, float]:
        return await self.post(urlencode({"payload": json.dumps(payload)}), **kw)


def block_actions(value: str, *, user: str, channel: str, trigger_id: str) -> dict[str, Any]:
    verb = value.split(" ", 1)[0]
    return {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "test"},
        "user": {"id": user, "team_id": TEAM},
        "api_app_id": "A0FAKEAPP01",
        "token": "legacy",
        "trigger_id": trigger_id,
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": channel},
        "channel": {"id": channel, "name": channel.lower()},
        "message": {"type": "message", "ts": "1700000000.000100", "text": "card"},
        "actions": [
            {
                "type": "button",
                "action_id": f"fusion:{verb}",
                "block_id": "buttons",
                "value": value,
                "action_ts": "1700000001.000200",
            }
        ],
    }


def view_submission(
    view: dict[str, Any], values: dict[str, Any], *, user: str, view_id: str
) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "team": {"id": TEAM, "domain": "test"},
        "user": {"id": user, "team_id": TEAM},
        "api_app_id": "A0FAKEAPP01",
        "token": "legacy",
        "trigger_id": "0.0.view",
        "view": {
            "id": view_id,
            "team_id": TEAM,
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view["private_metadata"],
            "blocks": view["blocks"],
            "state": {"values": values},
            "hash": "1.abc",
        },
    }


def typed(value: str) -> dict[str, Any]:
    return {"value": {"type": "plain_text_input", "value": value}}


def chosen(value: str | None) -> dict[str, Any]:
    option = (
        None if value is None else {"text": {"type": "plain_text", "text": value}, "value": value}
    )
    return {"value": {"type": "static_select", "selected_option": option}}


async def eventually(check: Callable[[], bool], seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlackWebAPI]:
    async with FakeSlackWebAPI() as server:
        yield server


async def serve(handle: Handle, fake: FakeSlackWebAPI) -> AsyncIterator[Slack]:
    app = create_slack_app(
        handle, bot_token=DEFAULT_BOT_TOKEN, signing_secret=SECRET, api_url=fake.url
    )
    runner = await start_http(app, 0)
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            yield Slack(session, f"http://127.0.0.1:{port}/slack/events")
    finally:
        await runner.cleanup()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def slack(recorder: Recorder, fake: FakeSlackWebAPI) -> AsyncIterator[Slack]:
    async for client in serve(recorder, fake):
        yield client


# ----------------------------------------------------------------------------- tests


async def test_tip_with_text_is_acked_at_once_and_handed_over(
    slack: Slack, recorder: Recorder
) -> None:
    status, body, took = await slack.command(
        "/tip", "Van idling | category: survl", user="UOLLY", channel="C0TIPS", trigger_id="1.2.3"
    )
    assert (status, body) == (200, "")
    assert took < 3.0
    await eventually(lambda: len(recorder.commands) == 1)
    assert recorder.commands[0] == Command(
        actor="slack:UOLLY",
        channel="slack:C0TIPS",
        text="!tip Van idling | category: survl",
        is_dm=False,
        source_key=f"slack:{TEAM}:1.2.3",
    )


async def test_fusion_command_and_empty_fusion_is_help(slack: Slack, recorder: Recorder) -> None:
    await slack.command("/fusion", "claim T-1", user="UANA", channel="C0REVIEW", trigger_id="1.1")
    await slack.command("/fusion", "", user="UOLLY", channel="D0OLLY", trigger_id="1.2")
    await eventually(lambda: len(recorder.commands) == 2)
    texts = sorted((c.text, c.actor, c.is_dm) for c in recorder.commands)
    assert texts == [("!claim T-1", "slack:UANA", False), ("!help", "slack:UOLLY", True)]


async def test_health(slack: Slack) -> None:
    async with slack.session.get(slack.url.replace("/slack/events", "/healthz")) as response:
        assert (response.status, await response.text()) == (200, "ok")


async def test_bad_signature_and_stale_timestamp_are_refused(
    slack: Slack, recorder: Recorder
) -> None:
    status, _, _ = await slack.command(
        "/tip", "x", user="U1", channel="C0TIPS", trigger_id="1.1", signature="v0=" + "0" * 64
    )
    assert status == 401
    status, _, _ = await slack.command(
        "/tip", "x", user="U1", channel="C0TIPS", trigger_id="1.2", timestamp=int(time.time()) - 400
    )
    assert status == 401
    await asyncio.sleep(0.05)
    assert recorder.commands == []


async def test_empty_tip_opens_the_form(
    slack: Slack, recorder: Recorder, fake: FakeSlackWebAPI
) -> None:
    trigger = fake.issue_trigger_id(user_id="UOLLY")
    status, body, _ = await slack.command(
        "/tip", "  ", user="UOLLY", channel="C0TIPS", trigger_id=trigger
    )
    assert (status, body) == (200, "")
    # Opened at once with a small view (the trigger lives 3 s), then filled in.
    await eventually(lambda: len(fake.updated_views()) == 1)
    loading = fake.opened_views()[0]
    assert loading["callback_id"] == TIP_CALLBACK and loading["submit"] is None
    assert [b["text"]["text"] for b in loading["blocks"]] == ["Loading…"]
    view = fake.updated_views()[0]
    assert view["id"] == loading["id"]
    assert view["callback_id"] == TIP_CALLBACK
    assert json.loads(view["private_metadata"]) == {"channel": "C0TIPS"}
    blocks = {b["block_id"]: b for b in view["blocks"]}
    assert list(blocks) == [
        "summary",
        "category",
        "location",
        "region",
        "when",
        "urgency",
        "details",
    ]
    assert blocks["summary"]["optional"] is False
    assert blocks["summary"]["element"]["max_length"] == 500
    options = [o["value"] for o in blocks["category"]["element"]["options"]]
    assert options == list(CATEGORIES)
    assert (
        blocks["category"]["element"]["options"][0]["text"]["text"]
        == "AVIATION — aviation activity"
    )
    assert [o["value"] for o in blocks["urgency"]["element"]["options"]] == [
        "immediate",
        "priority",
        "routine",
    ]
    assert blocks["details"]["element"]["multiline"] is True
    assert recorder.commands == []


async def test_tip_form_submission_files_the_tip_text(slack: Slack, recorder: Recorder) -> None:
    values = {
        "summary": typed("Man | photographing the fence"),
        "category": chosen("PHOTO"),
        "location": typed("Pier 4 | north gate"),
        "region": typed(""),
        "when": typed("today 14:10"),
        "urgency": chosen("priority"),
        "details": typed("Tall, red jacket\nleft | in a van"),
    }
    payload = view_submission(tip_modal("C0TIPS"), values, user="UOLLY", view_id="V0TIP")
    status, body, _ = await slack.interaction(payload)
    assert (status, body) == (200, "")
    await eventually(lambda: len(recorder.commands) == 1)
    assert recorder.commands[0] == Command(
        actor="slack:UOLLY",
        channel="slack:C0TIPS",
        text=(
            "!tip Man / photographing the fence | category: PHOTO | location: Pier 4 / north gate"
            " | when: today 14:10 | urgency: priority | details: Tall, red jacket\nleft / in a van"
        ),
        is_dm=False,
        source_key=f"slack:{TEAM}:view:V0TIP",
        # The boxes as typed: the core files them as they stand, reading none for fields.
        form=(
            ("summary", "Man | photographing the fence"),
            ("category", "PHOTO"),
            ("location", "Pier 4 | north gate"),
            ("when", "today 14:10"),
            ("urgency", "priority"),
            ("details", "Tall, red jacket\nleft | in a van"),
        ),
    )


async def test_tip_form_without_summary_shows_an_error(slack: Slack, recorder: Recorder) -> None:
    payload = view_submission(
        tip_modal("C0TIPS"),
        {"summary": typed("   "), "category": chosen(None)},
        user="U1",
        view_id="V1",
    )
    status, body, _ = await slack.interaction(payload)
    assert status == 200
    answer = json.loads(body)
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {"summary"}
    await asyncio.sleep(0.05)
    assert recorder.commands == []


async def test_button_click_is_the_text_command_from_that_user(
    slack: Slack, recorder: Recorder, fake: FakeSlackWebAPI
) -> None:
    payload = block_actions("claim T-1", user="UANA", channel="C0REVIEW", trigger_id="9.9.9")
    status, _, took = await slack.interaction(payload)
    assert status == 200 and took < 3.0
    await eventually(lambda: len(recorder.commands) == 1)
    command = recorder.commands[0]
    assert (command.actor, command.channel, command.text, command.source_ref) == (
        "slack:UANA",
        "slack:C0REVIEW",
        "!claim T-1",
        "1700000000.000100",
    )
    assert fake.opened_views() == []


async def test_needs_input_button_opens_its_form_and_the_form_becomes_the_command(
    slack: Slack, recorder: Recorder, fake: FakeSlackWebAPI
) -> None:
    trigger = fake.issue_trigger_id(user_id="UANA")
    payload = block_actions("ask T-1", user="UANA", channel="C0REVIEW", trigger_id=trigger)
    status, _, _ = await slack.interaction(payload)
    assert status == 200
    await eventually(lambda: len(fake.updated_views()) == 1)
    view = fake.updated_views()[0]
    assert view["id"] == fake.opened_views()[0]["id"]
    assert view["callback_id"] == INPUT_CALLBACK
    assert json.loads(view["private_metadata"]) == {
        "command": "ask T-1",
        "channel": "C0REVIEW",
        "ts": "1700000000.000100",
    }
    assert recorder.commands == []

    submitted = view_submission(
        view, {"input": typed("Which gate exactly?")}, user="UANA", view_id=view["id"]
    )
    status, body, _ = await slack.interaction(submitted)
    assert (status, body) == (200, "")
    await eventually(lambda: len(recorder.commands) == 1)
    command = recorder.commands[0]
    assert (command.actor, command.channel, command.text, command.source_ref) == (
        "slack:UANA",
        "slack:C0REVIEW",
        "!ask T-1 Which gate exactly?",
        "1700000000.000100",
    )


async def test_required_input_left_empty_is_an_error(slack: Slack, recorder: Recorder) -> None:
    reject = input_modal("reject T-1", "C0REVIEW", "1.1")
    status, body, _ = await slack.interaction(
        view_submission(reject, {"input": typed(" ")}, user="UANA", view_id="V1")
    )
    assert status == 200 and json.loads(body)["errors"].keys() == {"input"}
    await asyncio.sleep(0.05)
    assert recorder.commands == []


async def test_events_are_answered_so_slack_does_not_retry(
    slack: Slack, recorder: Recorder
) -> None:
    event = {
        "token": "legacy",
        "team_id": TEAM,
        "api_app_id": "A0FAKEAPP01",
        "type": "event_callback",
        "event_id": "Ev1",
        "event_time": int(time.time()),
        "event": {
            "type": "app_mention",
            "user": "UOLLY",
            "text": "<@U0DEFAULTBOT> hi",
            "channel": "C0TIPS",
            "ts": "1.2",
        },
    }
    status, _, _ = await slack.post(json.dumps(event), content_type="application/json")
    assert status == 200
    assert recorder.commands == []


# ------------------------------------------------------------------ the real bot


async def test_signed_tip_files_once_and_cards_the_review_channel(
    db: Database, fake: FakeSlackWebAPI
) -> None:
    bot = build(
        Settings.from_environ({}),
        policy=parse_policy(SLACK_POLICY, "slack-test-policy.toml"),
        database=db,
        senders={},
    )
    handled: list[Command] = []

    async def handle(command: Command) -> bool:
        result = await bot.handle(command)
        handled.append(command)
        return result

    async def tip_count() -> int:
        async with db.read() as conn:
            return len((await conn.execute(select(tips.c.id))).all())

    async for slack in serve(handle, fake):
        status, body, took = await slack.command(
            "/tip",
            "Man photographing the substation fence | category: photo",
            user="UOLLY",
            channel="C0TIPS",
            trigger_id="777.1.abc",
        )
        assert (status, body) == (200, "") and took < 3.0
        await eventually(lambda: len(handled) == 1, seconds=10)
        # Slack retries the same request (same trigger_id) when it thinks the first failed.
        status, _, _ = await slack.command(
            "/tip",
            "Man photographing the substation fence | category: photo",
            user="UOLLY",
            channel="C0TIPS",
            trigger_id="777.1.abc",
            headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
        )
        assert status == 200
        await eventually(lambda: len(handled) == 2, seconds=10)

    assert await tip_count() == 1
    targets = await outbox_targets(db)
    # One card in the review channel and one receipt to the officer, nothing for the retry.
    assert targets == [
        ("slack:C0REVIEW", None, "post"),
        ("slack:C0TIPS", "slack:UOLLY", "post"),
    ]


async def test_a_form_slack_refuses_to_open_falls_back_to_help(
    slack: Slack, recorder: Recorder, fake: FakeSlackWebAPI
) -> None:
    # A trigger_id Slack never issued (or one past its 3 seconds): views.open fails.
    await slack.command("/tip", "", user="UOLLY", channel="C0TIPS", trigger_id="1.2.unknown")
    await eventually(lambda: len(recorder.commands) == 1)
    assert (recorder.commands[0].text, recorder.commands[0].actor) == ("!help tip", "slack:UOLLY")
    assert fake.opened_views() == []


# --------------------------------------------------------------- the approve form


def radio(value: str | None) -> dict[str, Any]:
    option = (
        None if value is None else {"text": {"type": "plain_text", "text": value}, "value": value}
    )
    return {"value": {"type": "radio_buttons", "selected_option": option}}


def approve_values(**overrides: dict[str, Any]) -> dict[str, Any]:
    """What Slack submits for the approve form left at its initial values."""
    values: dict[str, Any] = {
        "tlp": chosen("amber"),
        "caveats": typed(""),
        "partners": typed(""),
        "timing": radio("now"),
        "at": typed(""),
        "title": typed(""),
    }
    values.update(overrides)
    return values


async def test_approve_button_opens_the_approve_form(
    slack: Slack, recorder: Recorder, fake: FakeSlackWebAPI
) -> None:
    trigger = fake.issue_trigger_id(user_id="UANA")
    payload = block_actions("approve T-1", user="UANA", channel="C0REVIEW", trigger_id=trigger)
    status, _, took = await slack.interaction(payload)
    assert status == 200 and took < 3.0
    await eventually(lambda: len(fake.updated_views()) == 1)
    view = fake.updated_views()[0]
    assert view["callback_id"] == APPROVE_CALLBACK
    assert view["submit"]["text"] == "Preview"
    assert json.loads(view["private_metadata"]) == {
        "tip": "T-1",
        "channel": "C0REVIEW",
        "ts": "1700000000.000100",
    }
    blocks = {b["block_id"]: b for b in view["blocks"] if "block_id" in b}
    assert list(blocks) == ["tlp", "caveats", "partners", "timing", "at", "title"]
    tlp = blocks["tlp"]["element"]
    assert tlp["type"] == "static_select"
    assert [o["value"] for o in tlp["options"]] == [
        "clear",
        "green",
        "amber",
        "amber+strict",
        "red",
    ]
    assert tlp["initial_option"]["value"] == "amber"
    timing = blocks["timing"]["element"]
    assert timing["type"] == "radio_buttons"
    assert [o["value"] for o in timing["options"]] == ["now", "digest", "at"]
    assert timing["initial_option"]["value"] == "now"
    assert all(blocks[b]["optional"] for b in ("caveats", "partners", "at", "title"))
    assert recorder.commands == []


async def test_approve_form_becomes_the_preview_command_without_confirm(
    slack: Slack, recorder: Recorder
) -> None:
    form = approve_modal("T-1", "C0REVIEW", "1700000000.000100")
    values = approve_values(
        tlp=chosen("amber+strict"),
        caveats=typed(" LES,  cui "),
        partners=typed("metro-pd, transit"),
        title=typed("  Substation   surveillance "),
    )
    status, body, _ = await slack.interaction(
        view_submission(form, values, user="UANA", view_id="V0APPROVE")
    )
    assert (status, body) == (200, "")
    await eventually(lambda: len(recorder.commands) == 1)
    assert recorder.commands[0] == Command(
        actor="slack:UANA",
        channel="slack:C0REVIEW",
        text=(
            "!approve T-1 tlp:amber+strict caveat:LES,cui to:metro-pd,transit now"
            " title: Substation surveillance"
        ),
        is_dm=False,
        source_key=f"slack:{TEAM}:view:V0APPROVE",
        source_ref="1700000000.000100",
    )

    # Left at its initial values: TLP:AMBER to every cleared partner; a digest, or a time.
    await slack.interaction(
        view_submission(form, approve_values(timing=radio("digest")), user="UANA", view_id="V2")
    )
    await slack.interaction(
        view_submission(
            form,
            approve_values(timing=radio("at"), at=typed("2026-12-01 07:00")),
            user="UANA",
            view_id="V3",
        )
    )
    # The form's title is all title: quoted, its last word can't pass for confirm.
    await slack.interaction(
        view_submission(
            form, approve_values(title=typed("Please confirm")), user="UANA", view_id="V4"
        )
    )
    await eventually(lambda: len(recorder.commands) == 4)
    assert sorted(c.text for c in recorder.commands[1:]) == [
        "!approve T-1 tlp:amber to:all at:2026-12-01T07:00",
        "!approve T-1 tlp:amber to:all digest",
        '!approve T-1 tlp:amber to:all now title: "Please confirm"',
    ]
    assert not any("confirm" in c.text.partition(" title:")[0].split() for c in recorder.commands)


async def test_approve_form_errors_are_shown_in_the_form(slack: Slack, recorder: Recorder) -> None:
    form = approve_modal("T-1", "C0REVIEW", None)
    cases = [
        (approve_values(timing=radio("at")), {"at"}),
        (approve_values(at=typed("2026-12-01T07:00")), {"at"}),
    ]
    for index, (values, fields) in enumerate(cases):
        status, body, _ = await slack.interaction(
            view_submission(form, values, user="UANA", view_id=f"V{index}")
        )
        assert status == 200
        answer = json.loads(body)
        assert answer["response_action"] == "errors"
        assert set(answer["errors"]) == fields
    await asyncio.sleep(0.05)
    assert recorder.commands == []


async def test_the_previews_confirm_button_sends_the_confirm_command(
    slack: Slack, recorder: Recorder, fake: FakeSlackWebAPI
) -> None:
    payload = block_actions(
        "approve T-1 tlp:amber to:metro-pd now confirm",
        user="UANA",
        channel="C0REVIEW",
        trigger_id=fake.issue_trigger_id(user_id="UANA"),
    )
    # The preview is ephemeral: Slack sends no message, only its container.
    del payload["message"]
    payload["container"]["is_ephemeral"] = True
    status, _, _ = await slack.interaction(payload)
    assert status == 200
    await eventually(lambda: len(recorder.commands) == 1)
    command = recorder.commands[0]
    assert (command.actor, command.channel, command.text) == (
        "slack:UANA",
        "slack:C0REVIEW",
        "!approve T-1 tlp:amber to:metro-pd now confirm",
    )
    assert fake.opened_views() == []


# ------------------------------------------------------------ direct messages (events)


def dm_event(
    text: str,
    *,
    event_id: str = "Ev0DM1",
    user: str = "UOLLY",
    channel: str = "D0OLLY",
    channel_type: str = "im",
    **extra: Any,
) -> str:
    return json.dumps(
        {
            "token": "legacy",
            "team_id": TEAM,
            "api_app_id": "A0FAKEAPP01",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "event": {
                "type": "message",
                "user": user,
                "text": text,
                "channel": channel,
                "channel_type": channel_type,
                "ts": "1700000100.000100",
                "event_ts": "1700000100.000100",
                **extra,
            },
        }
    )


RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}


async def test_a_persons_dm_goes_to_the_core_other_messages_dont(
    recorder: Recorder, fake: FakeSlackWebAPI
) -> None:
    seen: set[str] = set()

    async def seen_before(event_id: str) -> bool:
        known = event_id in seen
        seen.add(event_id)
        return known

    app = create_slack_app(
        recorder,
        bot_token=DEFAULT_BOT_TOKEN,
        signing_secret=SECRET,
        api_url=fake.url,
        seen_before=seen_before,
    )
    runner = await start_http(app, 0)
    try:
        async with aiohttp.ClientSession() as session:
            slack = Slack(session, f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events")
            sent = [
                dm_event("Tip Van idling by the gate | category: survl", event_id="Ev1"),
                dm_event("  !ask T-1 5th &amp; Main?", event_id="Ev2"),
                # Words, not a command: the core answers them (commands.direct_chat).
                dm_event("No vehicle seen", event_id="Ev3"),
                dm_event("!help", event_id="Ev4", channel="C0TIPS", channel_type="channel"),
                dm_event("!help", event_id="Ev5", bot_id="B0OTHER"),
                dm_event("!help", event_id="Ev6", subtype="message_changed"),
            ]
            for body in sent:
                status, _, took = await slack.post(body, content_type="application/json")
                assert status == 200 and took < 3.0
            # Slack retries the first one: it is acknowledged and handed over only once.
            status, _, _ = await slack.post(sent[0], content_type="application/json", headers=RETRY)
            assert status == 200
    finally:
        await runner.cleanup()
    assert recorder.commands == [
        Command(
            actor="slack:UOLLY",
            channel="slack:D0OLLY",
            text="Tip Van idling by the gate | category: survl",
            is_dm=True,
            source_key=f"slack:{TEAM}:event:Ev1",
        ),
        Command(
            actor="slack:UOLLY",
            channel="slack:D0OLLY",
            text="!ask T-1 5th & Main?",
            is_dm=True,
            source_key=f"slack:{TEAM}:event:Ev2",
        ),
        Command(
            actor="slack:UOLLY",
            channel="slack:D0OLLY",
            text="No vehicle seen",
            is_dm=True,
            source_key=f"slack:{TEAM}:event:Ev3",
        ),
    ]


# ------------------------------------------------------------------ the real bot again

PARTNER_POLICY = (
    SLACK_POLICY
    + """
[[partners]]
id = "metro-pd"
name = "Metro Police Department"
sector = "local"
max_tlp = "AMBER"
caveats = ["LES"]
channels = ["slack:C0METRO"]
"""
)


async def serve_bot(fake: FakeSlackWebAPI, db: Database) -> AsyncIterator[tuple[FusionBot, Slack]]:
    """The composition root's own bolt app and Slack sender, in this process."""
    settings = Settings.from_environ(
        {
            "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": fake.url,
        }
    )
    bot = build(
        settings,
        policy=parse_policy(PARTNER_POLICY, "slack-test-policy.toml"),
        database=db,
        senders=platform_senders(settings),
    )
    runner = await start_http(await slack_app(bot), 0)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
            yield bot, Slack(session, url)
    finally:
        await runner.cleanup()


async def test_a_retried_dm_tip_is_filed_once(db: Database, fake: FakeSlackWebAPI) -> None:
    async for bot, slack in serve_bot(fake, db):
        body = dm_event("tip Van idling by the substation | category: survl", event_id="Ev0TIP")
        status, _, _ = await slack.post(body, content_type="application/json")
        assert status == 200
        for retry in ("1", "2"):
            status, _, _ = await slack.post(
                body,
                content_type="application/json",
                headers={"X-Slack-Retry-Num": retry, "X-Slack-Retry-Reason": "http_timeout"},
            )
            assert status == 200
        await bot.drain(10)
    async with db.read() as conn:
        assert len((await conn.execute(select(tips.c.id))).all()) == 1
        events = (await conn.execute(select(handled_events.c.event_id))).scalars().all()
        assert events == ["Ev0TIP"]
    assert [m for m in fake.messages("C0REVIEW") if "T-1" in str(m)]
    dm = fake.dm_channel_id("UOLLY")
    assert dm is not None
    receipts = [m for m in fake.messages(dm) if "Received T-1" in str(m.get("text"))]
    assert len(receipts) == 1


async def test_preview_confirm_button_releases_the_alert(
    db: Database, fake: FakeSlackWebAPI
) -> None:
    async for bot, slack in serve_bot(fake, db):
        await slack.command(
            "/tip", "Drone over the rail yard", user="UOLLY", channel="C0TIPS", trigger_id="t.1"
        )
        await slack.command(
            "/fusion", "claim T-1", user="UANA", channel="C0REVIEW", trigger_id="t.2"
        )
        await slack.command(
            "/fusion",
            "approve T-1 tlp:amber caveat:LES to:metro-pd",
            user="UANA",
            channel="C0REVIEW",
            trigger_id="t.3",
        )
        await bot.drain(10)
        assert fake.messages("C0METRO") == []
        previews = [e for e in fake.ephemerals("C0REVIEW") if "Who will see this" in str(e)]
        assert len(previews) == 1 and previews[0]["user"] == "UANA"
        buttons = [
            element
            for block in previews[0]["blocks"]
            if block["type"] == "actions"
            for element in block["elements"]
        ]
        assert [(b["text"]["text"], b["value"], b.get("style")) for b in buttons] == [
            (
                "Confirm and send",
                "approve T-1 tlp:amber caveat:LES to:metro-pd now confirm",
                "primary",
            )
        ]
        click = block_actions(
            buttons[0]["value"], user="UANA", channel="C0REVIEW", trigger_id="t.4"
        )
        del click["message"]
        click["container"]["is_ephemeral"] = True
        status, _, _ = await slack.interaction(click)
        assert status == 200
        await bot.drain(10)
        alert = fake.messages("C0METRO")
        assert len(alert) == 1 and "TLP:AMBER // LES" in str(alert[0])
