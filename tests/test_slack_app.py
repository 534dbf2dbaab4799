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
from adapters.slack.modals import INPUT_CALLBACK, TIP_CALLBACK, input_modal, tip_modal
from bot.app import build
from bot.categories import CATEGORIES
from bot.policy_loader import parse_policy
from bot.settings import Settings
from commands.context import Command
from storage.db import Database
from storage.tables import tips
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
    await eventually(lambda: len(fake.opened_views()) == 1)
    view = fake.opened_views()[0]
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
    await eventually(lambda: len(fake.opened_views()) == 1)
    view = fake.opened_views()[0]
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


async def test_required_input_left_empty_is_an_error_and_approve_may_be_empty(
    slack: Slack, recorder: Recorder
) -> None:
    reject = input_modal("reject T-1", "C0REVIEW", "1.1")
    status, body, _ = await slack.interaction(
        view_submission(reject, {"input": typed(" ")}, user="UANA", view_id="V1")
    )
    assert status == 200 and json.loads(body)["errors"].keys() == {"input"}
    approve = input_modal("approve T-1", "C0REVIEW", "1.1")
    status, body, _ = await slack.interaction(
        view_submission(approve, {"input": typed("")}, user="UANA", view_id="V2")
    )
    assert (status, body) == (200, "")
    await eventually(lambda: len(recorder.commands) == 1)
    assert recorder.commands[0].text == "!approve T-1"


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
