"""The Slack sender against the local fake of Slack's Web API: what arrives, and how
Slack's refusals become the outbox's errors (wait, retry, give up, hold)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import (
    MAX_BLOCKS,
    MAX_HEADER_TEXT,
    MAX_SECTION_TEXT,
    escape_mrkdwn,
    render_blocks,
)
from adapters.slack.sender import METADATA_EVENT_TYPE, SlackSender
from bot.app import build
from bot.clock import ManualClock, SystemClock
from bot.delivery import (
    HoldDelivery,
    Outgoing,
    PermanentFailure,
    RateLimited,
    TemporaryFailure,
)
from bot.messages import Button, Message, MessageField
from bot.outbox_worker import OutboxWorker
from bot.policy_loader import parse_policy
from bot.settings import Settings
from bot.tlp import TLP
from storage import outbox_repo
from storage.db import Database
from tests.fakes.clock import FakeMonotonic
from tests.fakes.slack_web_api import DEFAULT_BOT_TOKEN, FakeSlackWebAPI

REVIEW = "C0REVIEW"
EVIL = "Van by the depot <!channel> see <https://evil.example|bank> & <@U0BOSS>"

CARD = Message(
    header="T-1 · Suspicious vehicle",
    text=EVIL,
    fields=[MessageField(label="Location", value="Depot <#C0SECRET>")],
    tlp=TLP.AMBER,
    caveats=["LES"],
    buttons=[
        Button(label="Claim", command="claim T-1", style="primary"),
        Button(label="Ask", command="ask T-1", needs_input=True),
        Button(label="Reject", command="reject T-1", style="danger", needs_input=True),
    ],
    footer="filed by slack:U0OFFICER",
)


@pytest.fixture
def clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
async def slack(clock: FakeMonotonic) -> AsyncIterator[FakeSlackWebAPI]:
    async with FakeSlackWebAPI(clock=clock) as fake:
        yield fake


def _sender(slack: FakeSlackWebAPI, **kwargs: object) -> SlackSender:
    return SlackSender(AsyncWebClient(token=DEFAULT_BOT_TOKEN, base_url=slack.url), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def sender(slack: FakeSlackWebAPI) -> AsyncIterator[SlackSender]:
    sender = _sender(slack)
    yield sender
    await sender.aclose()


def _out(target: str, key: str = "post:1", message: Message = CARD, **kw: str) -> Outgoing:
    return Outgoing(target=target, message=message, key=key, **kw)  # type: ignore[arg-type]


def _all_text(blocks: list[dict]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


# ------------------------------------------------------------------------ rendering


def test_escape_makes_control_sequences_inert() -> None:
    assert escape_mrkdwn("<!channel> & <@U1> <http://x|y>") == (
        "&lt;!channel&gt; &amp; &lt;@U1&gt; &lt;http://x|y&gt;"
    )


def test_render_puts_markings_first_and_buttons_last() -> None:
    blocks, text = render_blocks(CARD)
    assert blocks[0] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "*TLP:AMBER // LES*"}],
    }
    assert blocks[1]["type"] == "header"
    assert blocks[1]["text"]["type"] == "plain_text"
    actions = blocks[-1]
    assert actions["type"] == "actions"
    assert [e["action_id"] for e in actions["elements"]] == [
        "fusion:claim:0",
        "fusion:ask:1",
        "fusion:reject:2",
    ]
    assert [e["value"] for e in actions["elements"]] == ["claim T-1", "ask T-1", "reject T-1"]
    assert [e.get("style") for e in actions["elements"]] == ["primary", None, "danger"]
    assert text.startswith("[TLP:AMBER // LES]\n")


def test_render_respects_slack_limits() -> None:
    huge = Message(
        header="H" * 400,
        text=("line & <x>\n" * 2_000) * 3,
        fields=[MessageField(label=f"f{i}", value="v" * 3_000) for i in range(25)],
        buttons=[Button(label="B" * 100, command=f"claim T-{i}") for i in range(30)],
    )
    blocks, text = render_blocks(huge)
    assert len(blocks) <= MAX_BLOCKS
    header = next(b for b in blocks if b["type"] == "header")
    assert len(header["text"]["text"]) <= MAX_HEADER_TEXT
    assert header["text"]["text"].endswith("…")
    for block in blocks:
        if block["type"] == "section" and "text" in block:
            body = block["text"]["text"]
            assert len(body) <= MAX_SECTION_TEXT
            # An entity is never cut in half.
            assert not body.rstrip("…").endswith(("&", "&a", "&am", "&l", "&g", "&amp"))
        if block["type"] == "section" and "fields" in block:
            assert len(block["fields"]) <= 10
            assert all(len(f["text"]) <= 2_000 for f in block["fields"])
        if block["type"] == "actions":
            assert len(block["elements"]) <= 25
    ids = [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert len(ids) == len(set(ids)) == 30
    assert len(text) <= 40_000


# ---------------------------------------------------------------------- delivering


async def test_post_delivers_escaped_card_with_buttons_and_key(
    slack: FakeSlackWebAPI, sender: SlackSender
) -> None:
    ref = await sender.post(_out(f"slack:{REVIEW}"))
    [posted] = slack.posts(REVIEW)
    assert ref == f"{REVIEW}:{posted['ts']}"
    assert posted["metadata"] == {
        "event_type": METADATA_EVENT_TYPE,
        "event_payload": {"key": "post:1"},
    }
    rendered = _all_text(posted["blocks"])
    # No control sequence survives anywhere: no ping, no mention, no disguised link.
    for raw in ("<!channel>", "<https://evil.example|bank>", "<@U0BOSS>", "<#C0SECRET>"):
        assert raw not in rendered
        assert raw not in posted["text"]
    assert "&lt;!channel&gt;" in rendered
    assert "&lt;https://evil.example|bank&gt;" in rendered
    assert "&lt;!channel&gt;" in posted["text"]
    buttons = posted["blocks"][-1]["elements"]
    assert [b["text"]["text"] for b in buttons] == ["Claim", "Ask", "Reject"]


async def test_edit_updates_the_same_message(slack: FakeSlackWebAPI, sender: SlackSender) -> None:
    ref = await sender.post(_out(f"slack:{REVIEW}"))
    claimed = CARD.model_copy(update={"header": "T-1 · claimed by Ana", "buttons": []})
    await sender.edit(_out(f"slack:{REVIEW}", message=claimed), ref)
    [message] = slack.messages(REVIEW)
    assert ref.endswith(f":{message['ts']}")
    assert message["blocks"][1]["text"]["text"] == "T-1 · claimed by Ana"
    assert all(b["type"] != "actions" for b in message["blocks"])
    await sender.delete(_out(f"slack:{REVIEW}"), ref)
    assert slack.messages(REVIEW) == []


async def test_direct_message_opens_the_conversation_once(
    slack: FakeSlackWebAPI, sender: SlackSender
) -> None:
    first = await sender.post(_out("slack:U0ANA", key="dm:1"))
    slack_dm = slack.dm_channel_id("U0ANA")
    assert slack_dm is not None and first.startswith(f"{slack_dm}:")
    await sender.post(_out("slack:U0ANA", key="dm:2"))
    assert len(slack.calls_to("conversations.open")) == 1  # cached
    assert len(slack.posts(slack_dm)) == 2
    await sender.edit(_out("slack:U0ANA", key="dm:3"), first)
    assert len(slack.updates(slack_dm)) == 1


async def test_ephemeral_goes_to_one_person_and_cannot_be_edited(
    slack: FakeSlackWebAPI, sender: SlackSender
) -> None:
    out = _out(f"slack:{REVIEW}", key="eph:1", ephemeral_to="slack:U0OLLY")
    ref = await sender.post(out)
    assert ref.startswith("ephemeral:")
    [ephemeral] = slack.ephemerals(REVIEW)
    assert ephemeral["user"] == "U0OLLY"
    assert slack.posts(REVIEW) == []
    assert await sender.find_sent(out) is None
    with pytest.raises(PermanentFailure):
        await sender.edit(out, ref)


async def test_find_sent_finds_a_post_by_its_key(
    slack: FakeSlackWebAPI, sender: SlackSender
) -> None:
    out = _out(f"slack:{REVIEW}", key="post:crashed")
    # The process posted, then died before the outbox recorded the ref.
    ref = await sender.post(out)
    await sender.post(_out(f"slack:{REVIEW}", key="post:other"))
    assert await sender.find_sent(out) == ref
    assert await sender.find_sent(_out(f"slack:{REVIEW}", key="post:unknown")) is None
    [history] = slack.calls_to("conversations.history")[:1]
    assert history.params["include_all_metadata"] in (True, "1", "true")


# --------------------------------------------------------------------------- errors


async def test_pace_429_becomes_rate_limited(clock: FakeMonotonic) -> None:
    async with FakeSlackWebAPI(clock=clock, burst=1) as slack:
        sender = _sender(slack)
        await sender.post(_out(f"slack:{REVIEW}", key="a"))
        with pytest.raises(RateLimited) as limited:
            await sender.post(_out(f"slack:{REVIEW}", key="b"))
        assert limited.value.retry_after >= 1
        # One attempt only: slack_sdk did not retry behind the outbox's back.
        assert len(slack.calls_to("chat.postMessage")) == 2
        clock.advance(1.0)
        await sender.post(_out(f"slack:{REVIEW}", key="b"))
        assert len(slack.posts(REVIEW)) == 2


def test_slack_sdk_rate_limit_retries_are_removed() -> None:
    client = AsyncWebClient(
        token="xoxb-x", retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=5)]
    )
    sender = SlackSender(client)
    assert not any(
        isinstance(h, AsyncRateLimitErrorRetryHandler)
        for h in sender._client.retry_handlers  # the sender's own client
    )
    assert len(client.retry_handlers) == 1  # the caller's client is left alone


async def test_unknown_channel_is_permanent(clock: FakeMonotonic) -> None:
    async with FakeSlackWebAPI(clock=clock, strict_channels=True) as slack:
        with pytest.raises(PermanentFailure, match="channel_not_found"):
            await _sender(slack).post(_out("slack:C0NOWHERE"))


async def test_revoked_token_holds_delivery(slack: FakeSlackWebAPI, sender: SlackSender) -> None:
    slack.revoke(DEFAULT_BOT_TOKEN)
    with pytest.raises(HoldDelivery, match="token_revoked"):
        await sender.post(_out(f"slack:{REVIEW}"))


async def test_server_error_is_temporary(slack: FakeSlackWebAPI, sender: SlackSender) -> None:
    slack.fail_next("chat.postMessage", status=500)
    with pytest.raises(TemporaryFailure):
        await sender.post(_out(f"slack:{REVIEW}"))
    slack.fail_next("chat.update", error="fatal_error")
    ref = await sender.post(_out(f"slack:{REVIEW}"))
    with pytest.raises(TemporaryFailure):
        await sender.edit(_out(f"slack:{REVIEW}"), ref)


async def test_retry_after_header_is_honoured(slack: FakeSlackWebAPI, sender: SlackSender) -> None:
    slack.fail_next("chat.update", status=429, retry_after=3)
    ref = await sender.post(_out(f"slack:{REVIEW}"))
    with pytest.raises(RateLimited) as limited:
        await sender.edit(_out(f"slack:{REVIEW}"), ref)
    assert limited.value.retry_after == 3


async def test_unreachable_slack_is_temporary(slack: FakeSlackWebAPI) -> None:
    url = slack.url
    await slack.stop()  # nothing listens on the port any more
    sender = SlackSender(AsyncWebClient(token=DEFAULT_BOT_TOKEN, base_url=url))
    with pytest.raises(TemporaryFailure):
        await sender.post(_out(f"slack:{REVIEW}"))


async def test_editing_a_vanished_message_is_permanent(
    slack: FakeSlackWebAPI, sender: SlackSender
) -> None:
    with pytest.raises(PermanentFailure, match="message_not_found"):
        await sender.edit(_out(f"slack:{REVIEW}"), f"{REVIEW}:1600000000.000100")


async def test_too_long_message_is_permanent(slack: FakeSlackWebAPI, sender: SlackSender) -> None:
    slack.fail_next("chat.postMessage", error="msg_too_long")
    with pytest.raises(PermanentFailure, match="msg_too_long"):
        await sender.post(_out(f"slack:{REVIEW}"))


async def test_other_workspace_uses_its_own_token(slack: FakeSlackWebAPI) -> None:
    slack.add_workspace("T2", "xoxb-partner")
    asked: list[str] = []

    async def token_for_team(team_id: str) -> str | None:
        asked.append(team_id)
        return {"T2": "xoxb-partner"}.get(team_id)

    sender = _sender(slack, token_for_team=token_for_team)
    ref = await sender.post(_out("slack:T2/C9", key="partner:1"))
    [call] = slack.calls_to("chat.postMessage")
    assert call.team_id == "T2"  # authenticated as the partner workspace's bot
    assert asked == ["T2"]
    await sender.edit(_out("slack:T2/C9", key="partner:2"), ref)
    assert slack.calls_to("chat.update")[0].team_id == "T2"
    assert await sender.find_sent(_out("slack:T2/C9", key="partner:1")) == ref

    with pytest.raises(HoldDelivery, match="not installed"):
        await sender.post(_out("slack:T3/C1", key="partner:3"))
    slack.revoke("xoxb-partner")
    with pytest.raises(HoldDelivery, match="token_revoked"):
        await sender.post(_out("slack:T2/C9", key="partner:4"))


class ConnectionNotingSlack(FakeSlackWebAPI):
    """The fake, noting which client connection (address and port) each call came on."""

    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.connections: list[object] = []

    async def _handle(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        self.connections.append(request.transport.get_extra_info("peername"))
        return await super()._handle(request)


async def test_messages_one_after_another_share_one_connection() -> None:
    # A tip's card, then the next tip's card a moment later: no new connection (and, to
    # Slack, no new TLS handshake) for each message while the outbox worker runs (it asks
    # for this, and closes the connections when it stops: aclose()).
    async with ConnectionNotingSlack() as slack:
        sender = _sender(slack)
        sender.keep_connections()
        for n in range(3):
            await sender.post(_out(f"slack:C0CH{n}", key=f"post:{n}"))
            await asyncio.sleep(0.05)
        await sender.aclose()
        await sender.post(_out("slack:C0CH9", key="post:9"))
        await sender.aclose()
    first, second, third, after_close = slack.connections
    assert first == second == third
    assert after_close != first


# ------------------------------------------------------------- with the real outbox

SLACK_POLICY = """
[center]
name = "Test Fusion Center"
timezone = "America/New_York"
regions = ["north"]

[roles]
officers = ["*"]
analysts = ["slack:U0ANA"]
supervisors = ["slack:U0SAM"]
admins = ["slack:U0SAM"]

[sla]
immediate = 15
priority = 60
routine = 1440

[[intake]]
channels = ["slack:C0TIPS"]

[[review]]
name = "general"
channels = ["slack:C0REVIEW"]
categories = ["*"]
"""


async def test_outbox_worker_delivers_a_burst_once_each_in_order(db: Database) -> None:
    async with FakeSlackWebAPI(per_channel_per_second=1.0, burst=1) as slack:
        client = AsyncWebClient(token=DEFAULT_BOT_TOKEN, base_url=slack.url)
        bot = build(
            Settings.from_environ({}),
            policy=parse_policy(SLACK_POLICY, "slack-policy.toml"),
            senders={"slack": SlackSender(client)},
            database=db,
        )
        # Someone else just posted: the channel's burst is spent, so the first send meets
        # a 429 and the worker must wait out Retry-After.
        await client.chat_postMessage(channel=REVIEW, text="earlier")
        keys = [f"burst:{i}" for i in range(5)]
        async with db.transaction() as conn:
            for i, key in enumerate(keys):
                await outbox_repo.enqueue_post(
                    conn,
                    target=f"slack:{REVIEW}",
                    message=Message(header=f"T-{i}", text=f"tip {i}"),
                    now=bot.core.clock.now(),
                    key=key,
                )
        worker = asyncio.create_task(bot.worker.run())
        try:
            # Polled: the fake offers nothing to wait on. Five sends at 1/s take about 6 s.
            for _ in range(240):
                if len(slack.posts(REVIEW)) >= 6:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # anything doubled would show up now
        finally:
            await bot.worker.stop()
            await worker
        posted = [p for p in slack.posts(REVIEW) if p.get("metadata")]
        assert [p["metadata"]["event_payload"]["key"] for p in posted] == keys
        assert len(slack.calls_to("chat.postMessage")) > 6  # at least one 429 was met
        async with db.read() as conn:
            states = await outbox_repo.count_by_state(conn)
        assert states == {outbox_repo.SENT: 5}


async def test_after_a_workspace_wide_429_nothing_more_is_posted_there_until_retry_after(
    db: Database,
) -> None:
    clock = FakeMonotonic()
    bot_clock = ManualClock(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    async with FakeSlackWebAPI(
        clock=clock, burst=3, workspace_per_minute=60, workspace_burst=2
    ) as slack:
        bot = build(
            Settings.from_environ({}),
            policy=parse_policy(SLACK_POLICY, "slack-policy.toml"),
            clock=bot_clock,
            senders={"slack": _sender(slack)},
            database=db,
        )

        async def queue(channel: str, *, receipt_for: str | None = None) -> None:
            async with db.transaction() as conn:
                await outbox_repo.enqueue_post(
                    conn,
                    target=f"slack:{channel}",
                    message=Message(text=f"to {channel}"),
                    now=bot.core.clock.now(),
                    ephemeral_to=f"slack:{receipt_for}" if receipt_for else None,
                )

        # The workspace takes two posts at once; the third, to a channel of its own with
        # room to spare, is refused for the workspace.
        for channel in ("C0ONE", "C0TWO", "C0THREE"):
            await queue(channel)
            await bot.drain()
        posts = len(slack.calls_to("chat.postMessage"))
        assert posts == 3 and slack.posts("C0THREE") == []
        # During Retry-After, posts to other channels of the workspace are not tried (each
        # would be refused), while an officer's receipt (another method) still goes.
        await queue("C0FOUR")
        await queue("C0FIVE")
        await queue("C0TIPS", receipt_for="U0OFFICER")
        await bot.drain()
        assert len(slack.calls_to("chat.postMessage")) == posts
        assert len(slack.ephemerals("C0TIPS")) == 1
        # Once it has passed, each goes, once, at the pace the workspace allows.
        for _ in range(5):
            clock.advance(1.0)
            bot_clock.advance(timedelta(seconds=1))
            await bot.drain()
        await bot.stop()
        for channel in ("C0ONE", "C0TWO", "C0THREE", "C0FOUR", "C0FIVE"):
            assert [p["text"] for p in slack.posts(channel)] == [f"to {channel}"], channel


def test_rate_limits_are_shared_per_workspace_and_method() -> None:
    sender = SlackSender(AsyncWebClient(token=DEFAULT_BOT_TOKEN))
    card, other = (sender.rate_scope(t, "post", ephemeral=False) for t in ("slack:C1", "slack:C2"))
    assert card == other  # one workspace's posts
    assert sender.rate_scope("slack:C1", "post", ephemeral=True) != card  # receipts
    assert sender.rate_scope("slack:C1", "edit", ephemeral=False) != card  # chat.update
    assert sender.rate_scope("slack:T9/C1", "post", ephemeral=False) != card  # a partner's


@contextlib.asynccontextmanager
async def _fanning_out(
    db: Database, slack: FakeSlackWebAPI, channels: list[str]
) -> AsyncIterator[None]:
    """One post to each channel queued, and a worker with the real Slack sender (10 sends
    at once) delivering them, on the real clock the fake's limits run on; stopped on the
    way out, which must take no more than a few seconds."""
    clock = SystemClock()
    async with db.transaction() as conn:
        for channel in channels:
            await outbox_repo.enqueue_post(
                conn,
                target=f"slack:{channel}",
                message=Message(text=f"alert to {channel}"),
                now=clock.now(),
            )
    worker = OutboxWorker(db, {"slack": _sender(slack)}, clock, concurrency=10)
    running = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        await worker.stop()
        await asyncio.wait_for(running, 5)


async def _until_posted(
    slack: FakeSlackWebAPI, channels: list[str], count: int, seconds: float
) -> None:
    """Until ``count`` of the channels have their post (polled: the fake offers nothing to
    wait on), or ``seconds`` have passed."""
    for _ in range(int(seconds / 0.05)):
        if sum(1 for c in channels if slack.posts(c)) >= count:
            return
        await asyncio.sleep(0.05)


async def test_a_fan_out_into_a_rate_limited_workspace_paces_itself_to_the_limit(
    db: Database,
) -> None:
    # The workspace takes 20 posts a second after a burst of 10 (Slack has such a limit
    # and publishes no figure). Sent at full concurrency after every Retry-After, the
    # fan-out would meet a 429 wave after wave (about 10 refused each second); paced at
    # the rate the workspace showed, it meets the first wave and then almost none.
    channels = [f"C0W{i:03d}" for i in range(80)]
    async with FakeSlackWebAPI(workspace_per_minute=1200, workspace_burst=10) as slack:
        async with _fanning_out(db, slack, channels):
            await _until_posted(slack, channels, len(channels), seconds=30)
            await asyncio.sleep(0.3)  # anything doubled would show up now
        refused = len(slack.calls_to("chat.postMessage")) - sum(
            len(slack.posts(c)) for c in channels
        )
    assert [c for c in channels if len(slack.posts(c)) != 1] == []
    # The first wave: what was in flight when the workspace first refused (10 at most);
    # then the probes above the learned rate, a few sends each.
    assert 1 <= refused <= 16, refused
    async with db.read() as conn:
        assert await outbox_repo.count_by_state(conn) == {outbox_repo.SENT: len(channels)}


async def test_a_stop_does_not_wait_for_a_paced_workspace_and_leaves_the_rest_queued(
    db: Database,
) -> None:
    # A workspace that takes one post a second: once the worker has learned that, the
    # rest of a fan-out waits in line for turns seconds away. Stopping doesn't wait for
    # them: they go back to the queue (not leased to a process that has stopped), and
    # whatever was sent is recorded once.
    channels = [f"C0S{i:03d}" for i in range(30)]
    async with FakeSlackWebAPI(workspace_per_minute=60, workspace_burst=3) as slack:
        async with _fanning_out(db, slack, channels):
            # Until the pace is learned (after the burst of 3) and paced posts have gone.
            await _until_posted(slack, channels, 5, seconds=10)
        sent = [c for c in channels if slack.posts(c)]
    assert 5 <= len(sent) < len(channels)
    assert all(len(slack.posts(c)) == 1 for c in sent)
    async with db.read() as conn:
        states = await outbox_repo.count_by_state(conn)
    assert states == {outbox_repo.SENT: len(sent), outbox_repo.PENDING: len(channels) - len(sent)}
