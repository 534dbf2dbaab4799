"""The Slack Web API fake answers a real slack_sdk client the way Slack would.

Other tests trust this fake to stand in for Slack, so these pin the behaviours the adapter
and the outbox rely on: message state after edits, metadata in history, the per-channel
pace and 429s, auth failures, limits on content, trigger expiry and the OAuth exchange.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.clock import FakeMonotonic
from tests.fakes.slack_web_api import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_BOT_USER_ID,
    DEFAULT_TEAM_ID,
    FakeSlackWebAPI,
)

REVIEW = "C0REVIEW"
KEY_EVENT = "fusionbot_delivery"


@pytest.fixture
def clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
async def slack(clock: FakeMonotonic) -> AsyncIterator[FakeSlackWebAPI]:
    async with FakeSlackWebAPI(clock=clock) as fake:
        yield fake


@pytest.fixture
def client(slack: FakeSlackWebAPI) -> AsyncWebClient:
    return AsyncWebClient(token=DEFAULT_BOT_TOKEN, base_url=slack.url)


def _error(exc: pytest.ExceptionInfo[SlackApiError]) -> str:
    return str(exc.value.response["error"])


async def test_url_is_an_api_base_on_loopback(slack: FakeSlackWebAPI) -> None:
    assert slack.url.startswith("http://127.0.0.1:")
    assert slack.url.endswith("/api/")


async def test_post_update_and_history_carry_metadata(
    slack: FakeSlackWebAPI, client: AsyncWebClient
) -> None:
    metadata = {"event_type": KEY_EVENT, "event_payload": {"key": "alert-1/slack:C0REVIEW"}}
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*T-1* new"}}]
    first = await client.chat_postMessage(
        channel=REVIEW, text="T-1 new", blocks=blocks, metadata=metadata
    )
    second = await client.chat_postMessage(channel=REVIEW, text="T-2 new")
    assert first["channel"] == REVIEW
    assert float(second["ts"]) > float(first["ts"])
    assert first["message"]["metadata"] == metadata

    updated = await client.chat_update(channel=REVIEW, ts=first["ts"], text="T-1 claimed")
    assert updated["ts"] == first["ts"]
    assert updated["text"] == "T-1 claimed"
    # Blocks and metadata the update did not mention stay, as on Slack.
    assert updated["message"]["blocks"] == blocks
    assert updated["message"]["metadata"] == metadata

    history = await client.conversations_history(channel=REVIEW, include_all_metadata=True)
    messages = history["messages"]
    assert [m["ts"] for m in messages] == [second["ts"], first["ts"]]
    assert messages[1]["text"] == "T-1 claimed"
    assert messages[1]["metadata"] == metadata
    assert "edited" in messages[1]
    assert history["has_more"] is False

    # Without include_all_metadata the payload does not come back: a dedupe check must ask.
    bare = await client.conversations_history(channel=REVIEW)
    assert all("metadata" not in m for m in bare["messages"])

    assert [p["text"] for p in slack.posts(REVIEW)] == ["T-1 new", "T-2 new"]
    assert [u["text"] for u in slack.updates(REVIEW)] == ["T-1 claimed"]
    assert [m["text"] for m in slack.messages(REVIEW)] == ["T-1 claimed", "T-2 new"]
    assert [r["text"] for r in slack.revisions(REVIEW, first["ts"])] == ["T-1 new", "T-1 claimed"]


async def test_update_and_delete_of_a_missing_message(
    slack: FakeSlackWebAPI, client: AsyncWebClient
) -> None:
    with pytest.raises(SlackApiError) as missing:
        await client.chat_update(channel=REVIEW, ts="1600000000.000100", text="x")
    assert _error(missing) == "message_not_found"

    posted = await client.chat_postMessage(channel=REVIEW, text="gone soon")
    await client.chat_delete(channel=REVIEW, ts=posted["ts"])
    assert slack.messages(REVIEW) == []
    assert slack.deletions(REVIEW) == [posted["ts"]]
    with pytest.raises(SlackApiError) as deleted:
        await client.chat_update(channel=REVIEW, ts=posted["ts"], text="back?")
    assert _error(deleted) == "message_not_found"


async def test_thread_replies_stay_out_of_history(client: AsyncWebClient) -> None:
    parent = await client.chat_postMessage(channel=REVIEW, text="T-1")
    await client.chat_postMessage(channel=REVIEW, text="question", thread_ts=parent["ts"])

    history = await client.conversations_history(channel=REVIEW)
    assert [m["text"] for m in history["messages"]] == ["T-1"]
    assert history["messages"][0]["reply_count"] == 1

    thread = await client.conversations_replies(channel=REVIEW, ts=parent["ts"])
    assert [m["text"] for m in thread["messages"]] == ["T-1", "question"]


async def test_history_pages_with_slack_sdk_cursor(clock: FakeMonotonic) -> None:
    async with FakeSlackWebAPI(clock=clock, burst=10) as slack:
        client = AsyncWebClient(token=DEFAULT_BOT_TOKEN, base_url=slack.url)
        for n in range(5):
            await client.chat_postMessage(channel=REVIEW, text=f"m{n}")
        first = await client.conversations_history(channel=REVIEW, limit=2)
        pages = [[m["text"] for m in page["messages"]] async for page in first]
    assert pages == [["m4", "m3"], ["m2", "m1"], ["m0"]]


async def test_posting_over_the_channel_pace_gets_429_with_retry_after(
    clock: FakeMonotonic,
) -> None:
    async with FakeSlackWebAPI(clock=clock, per_channel_per_second=1.0, burst=1) as slack:
        client = AsyncWebClient(token=DEFAULT_BOT_TOKEN, base_url=slack.url)
        await client.chat_postMessage(channel=REVIEW, text="one")
        with pytest.raises(SlackApiError) as limited:
            await client.chat_postMessage(channel=REVIEW, text="two")
        assert limited.value.response.status_code == 429
        assert limited.value.response.headers["Retry-After"] == "1"
        assert _error(limited) == "ratelimited"

        # The pace is per channel: another channel is not held back.
        await client.chat_postMessage(channel="C0OTHER", text="elsewhere")

        clock.advance(1.0)
        await client.chat_postMessage(channel=REVIEW, text="two")
        assert [p["text"] for p in slack.posts(REVIEW)] == ["one", "two"]


async def test_the_workspace_wide_limit_holds_every_channel_and_not_other_workspaces(
    clock: FakeMonotonic,
) -> None:
    async with FakeSlackWebAPI(
        clock=clock, burst=3, workspace_per_minute=60, workspace_burst=2
    ) as slack:
        slack.add_workspace("T0PARTNER", bot_token="xoxb-partner")
        client = AsyncWebClient(token=DEFAULT_BOT_TOKEN, base_url=slack.url)
        await client.chat_postMessage(channel="C0ONE", text="one")
        await client.chat_postMessage(channel="C0TWO", text="two")
        # Each channel has room left, the workspace has none.
        with pytest.raises(SlackApiError) as limited:
            await client.chat_postMessage(channel="C0THREE", text="three")
        assert limited.value.response.status_code == 429
        assert limited.value.response.headers["Retry-After"] == "1"
        assert slack.posts("C0THREE") == []
        # Another workspace has a limit of its own.
        partner = AsyncWebClient(token="xoxb-partner", base_url=slack.url)
        await partner.chat_postMessage(channel="C0THEIRS", text="theirs")

        clock.advance(1.0)
        await client.chat_postMessage(channel="C0THREE", text="three")
        assert [p["text"] for p in slack.posts("C0THREE")] == ["three"]


async def test_slack_sdk_rate_limit_retry_handler_waits_then_succeeds() -> None:
    # The real clock: slack_sdk's handler really sleeps Retry-After (plus jitter) seconds.
    async with FakeSlackWebAPI(per_channel_per_second=1.0, burst=1) as slack:
        client = AsyncWebClient(
            token=DEFAULT_BOT_TOKEN,
            base_url=slack.url,
            retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
        )
        await client.chat_postMessage(channel=REVIEW, text="one")
        started = time.monotonic()
        await client.chat_postMessage(channel=REVIEW, text="two")
        waited = time.monotonic() - started

        assert waited >= 1.0
        assert len(slack.calls_to("chat.postMessage")) == 3
        assert [p["text"] for p in slack.posts(REVIEW)] == ["one", "two"]


async def test_unknown_token_is_invalid_auth_and_missing_token_not_authed(
    slack: FakeSlackWebAPI,
) -> None:
    stranger = AsyncWebClient(token="xoxb-nobody", base_url=slack.url)
    with pytest.raises(SlackApiError) as invalid:
        await stranger.chat_postMessage(channel=REVIEW, text="hi")
    assert _error(invalid) == "invalid_auth"

    anonymous = AsyncWebClient(base_url=slack.url)
    with pytest.raises(SlackApiError) as anon:
        await anonymous.auth_test()
    assert _error(anon) == "not_authed"
    assert slack.posts(REVIEW) == []
    assert slack.calls[0].team_id is None


async def test_revoked_token_answers_token_revoked(
    slack: FakeSlackWebAPI, client: AsyncWebClient
) -> None:
    auth = await client.auth_test()
    assert (auth["team_id"], auth["user_id"]) == (DEFAULT_TEAM_ID, DEFAULT_BOT_USER_ID)

    slack.revoke(DEFAULT_BOT_TOKEN)
    with pytest.raises(SlackApiError) as revoked:
        await client.chat_postMessage(channel=REVIEW, text="hi")
    assert _error(revoked) == "token_revoked"


async def test_strict_channels_answer_channel_not_found(clock: FakeMonotonic) -> None:
    async with FakeSlackWebAPI(clock=clock, strict_channels=True) as slack:
        slack.add_channel(REVIEW, name="review")
        slack.add_channel("C0PARTNER", team_id="T0PARTNER")
        client = AsyncWebClient(token=DEFAULT_BOT_TOKEN, base_url=slack.url)

        await client.chat_postMessage(channel=REVIEW, text="known")
        for channel in ("C0NOPE", "C0PARTNER"):  # unknown; another workspace's
            with pytest.raises(SlackApiError) as missing:
                await client.chat_postMessage(channel=channel, text="lost")
            assert _error(missing) == "channel_not_found"
        info = await client.conversations_info(channel=REVIEW)
        assert info["channel"]["name"] == "review"


async def test_text_and_block_limits(slack: FakeSlackWebAPI, client: AsyncWebClient) -> None:
    await client.chat_postMessage(channel=REVIEW, text="x" * 40_000)
    with pytest.raises(SlackApiError) as too_long:
        await client.chat_postMessage(channel=REVIEW, text="x" * 40_001)
    assert _error(too_long) == "msg_too_long"

    divider = {"type": "divider"}
    with pytest.raises(SlackApiError) as too_many:
        await client.chat_postMessage(channel=REVIEW, text="fallback", blocks=[divider] * 51)
    assert _error(too_many) == "invalid_blocks"
    assert too_many.value.response["errors"]

    # slack_sdk warns before sending; Slack then refuses the empty message.
    with pytest.warns(UserWarning, match="text"), pytest.raises(SlackApiError) as empty:
        await client.chat_postMessage(channel=REVIEW, text="")
    assert _error(empty) == "no_text"
    assert len(slack.posts(REVIEW)) == 1


async def test_views_open_needs_a_trigger_younger_than_3s(
    slack: FakeSlackWebAPI, client: AsyncWebClient, clock: FakeMonotonic
) -> None:
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Approve T-1"}, "blocks": []}

    stale = slack.issue_trigger_id()
    clock.advance(3.0)
    with pytest.raises(SlackApiError) as expired:
        await client.views_open(trigger_id=stale, view=modal)
    assert _error(expired) == "expired_trigger_id"

    fresh = slack.issue_trigger_id()
    clock.advance(2.9)
    opened = await client.views_open(trigger_id=fresh, view=modal)
    view_id = opened["view"]["id"]
    with pytest.raises(SlackApiError) as reused:
        await client.views_open(trigger_id=fresh, view=modal)
    assert _error(reused) == "exchanged_trigger_id"

    # Filling the modal after the ack needs no trigger.
    filled = {**modal, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "ok"}}]}
    updated = await client.views_update(view_id=view_id, view=filled)
    assert updated["view"]["id"] == view_id
    assert [v["id"] for v in slack.updated_views()] == [view_id]


# slack_sdk 3.48 builds aiohttp.BasicAuth for the client credentials, which aiohttp 3.14
# deprecates; that warning is the SDK's, not something the fake or the app can fix.
@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
async def test_oauth_v2_access_installs_a_workspace(slack: FakeSlackWebAPI) -> None:
    slack.add_pending_install("code-1", team_id="T0PARTNER", team_name="Metro PD")
    oauth = AsyncWebClient(base_url=slack.url)

    installed = await oauth.oauth_v2_access(
        client_id=slack.client_id, client_secret=slack.client_secret, code="code-1"
    )
    assert installed["token_type"] == "bot"
    assert installed["team"] == {"name": "Metro PD", "id": "T0PARTNER"}
    assert installed["access_token"].startswith("xoxb-")
    assert installed["bot_user_id"] and installed["app_id"] == slack.app_id
    assert installed["authed_user"]["id"]

    partner = AsyncWebClient(token=installed["access_token"], base_url=slack.url)
    assert (await partner.auth_test())["team_id"] == "T0PARTNER"

    with pytest.raises(SlackApiError) as reused:
        await oauth.oauth_v2_access(
            client_id=slack.client_id, client_secret=slack.client_secret, code="code-1"
        )
    assert _error(reused) == "invalid_code"
    with pytest.raises(SlackApiError) as bad_secret:
        await oauth.oauth_v2_access(client_id=slack.client_id, client_secret="no", code="x")
    assert _error(bad_secret) == "bad_client_secret"


async def test_injected_500_and_rate_limit_storm(
    slack: FakeSlackWebAPI, client: AsyncWebClient, clock: FakeMonotonic
) -> None:
    slack.fail_next("chat.postMessage", status=500, times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as failed:
            await client.chat_postMessage(channel=REVIEW, text="hi")
        assert failed.value.response.status_code == 500
    await client.chat_postMessage(channel=REVIEW, text="hi")

    slack.rate_limit_storm(2.5)
    with pytest.raises(SlackApiError) as storm:
        await client.auth_test()
    assert storm.value.response.status_code == 429
    assert storm.value.response.headers["Retry-After"] == "3"
    clock.advance(2.5)
    await client.auth_test()
    assert len(slack.posts(REVIEW)) == 1


async def test_a_timed_out_post_still_lands_so_history_must_be_checked(
    slack: FakeSlackWebAPI,
) -> None:
    slack.fail_next("chat.postMessage", delay=0.3)
    metadata = {"event_type": KEY_EVENT, "event_payload": {"key": "k-1"}}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.1)) as session:
        client = AsyncWebClient(token=DEFAULT_BOT_TOKEN, base_url=slack.url, session=session)
        with pytest.raises(TimeoutError):
            await client.chat_postMessage(channel=REVIEW, text="alert", metadata=metadata)

    for _ in range(50):
        if slack.posts(REVIEW):
            break
        await asyncio.sleep(0.02)
    client = AsyncWebClient(token=DEFAULT_BOT_TOKEN, base_url=slack.url)
    history = await client.conversations_history(channel=REVIEW, include_all_metadata=True)
    keys = [m["metadata"]["event_payload"]["key"] for m in history["messages"]]
    assert keys == ["k-1"]


async def test_form_bodies_and_token_placement(slack: FakeSlackWebAPI) -> None:
    async with aiohttp.ClientSession() as session:
        form = {
            "token": DEFAULT_BOT_TOKEN,
            "channel": REVIEW,
            "text": "from a form",
            "blocks": '[{"type": "divider"}]',
        }
        async with session.post(slack.url + "chat.postMessage", data=form) as resp:
            assert (await resp.json())["ok"] is True
        # Slack does not read a token from inside a JSON body.
        json_body = {"token": DEFAULT_BOT_TOKEN, "channel": REVIEW, "text": "json"}
        async with session.post(slack.url + "chat.postMessage", json=json_body) as resp:
            assert await resp.json() == {"ok": False, "error": "not_authed"}
    assert slack.posts(REVIEW)[0]["blocks"] == [{"type": "divider"}]
    assert "token" not in slack.calls[0].params


async def test_dm_ephemeral_and_user_lookup(slack: FakeSlackWebAPI, client: AsyncWebClient) -> None:
    slack.add_user("U0OFFICER", name="olive", real_name="Olive Officer")
    opened = await client.conversations_open(users="U0OFFICER")
    dm = opened["channel"]["id"]
    assert dm.startswith("D")
    again = await client.conversations_open(users="U0OFFICER")
    assert again["channel"]["id"] == dm and again["already_open"] is True

    posted = await client.chat_postMessage(channel="U0OFFICER", text="received T-1")
    assert posted["channel"] == dm == slack.dm_channel_id("U0OFFICER")

    ephemeral = await client.chat_postEphemeral(channel=REVIEW, user="U0OFFICER", text="only you")
    assert slack.ephemerals(REVIEW)[0]["message_ts"] == ephemeral["message_ts"]

    user = await client.users_info(user="U0OFFICER")
    assert user["user"]["real_name"] == "Olive Officer"
