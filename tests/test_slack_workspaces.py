"""The app installed in a partner's own workspace: OAuth install over our HTTP routes,
alerts sent there with that workspace's token, a revoked token holding deliveries (and
telling the analysts once), and a reinstall letting them through."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest

from adapters.slack.app import create_slack_app
from adapters.slack.http import start_http
from adapters.slack.oauth import SlackInstallations
from bot.app import FusionBot, attach_installations, build, platform_senders, slack_installations
from bot.messages import Message
from bot.policy_loader import parse_policy
from bot.settings import Settings
from storage import outbox_repo
from storage.db import Database
from tests.fakes.slack_web_api import DEFAULT_BOT_TOKEN, DEFAULT_TEAM_ID, FakeSlackWebAPI
from tests.test_slack_app import SECRET, Recorder, Slack, block_actions

PARTNER_TEAM = "T0PARTNER"
PARTNER_CHANNEL = f"slack:{PARTNER_TEAM}/C0PARTNER"

POLICY = f"""
[center]
name = "Test Fusion Center"
timezone = "America/New_York"
regions = ["north"]

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

[[partners]]
id = "metro-pd"
name = "Metro Police Department"
sector = "local"
max_tlp = "AMBER"
channels = ["{PARTNER_CHANNEL}"]
"""


@dataclass
class Center:
    fake: FakeSlackWebAPI
    bot: FusionBot
    installations: SlackInstallations
    http: aiohttp.ClientSession
    base: str

    async def install_link(self) -> tuple[str, dict[str, list[str]]]:
        async with self.http.get(f"{self.base}/slack/install", allow_redirects=False) as r:
            assert r.status == 302
            location = r.headers["Location"]
        return location, parse_qs(urlsplit(location).query)

    async def redirect(self, **query: str) -> tuple[int, str]:
        url = f"{self.base}/slack/oauth_redirect?{urlencode(query)}"
        async with self.http.get(url) as r:
            return r.status, await r.text()

    async def install(self, code: str) -> str:
        _, query = await self.install_link()
        status, page = await self.redirect(code=code, state=query["state"][0])
        assert status == 200, page
        return page

    async def post_to_partner(self, text: str) -> None:
        async with self.bot.db.transaction() as conn:
            await outbox_repo.enqueue_post(
                conn,
                target=PARTNER_CHANNEL,
                message=Message(text=text),
                now=self.bot.core.clock.now(),
            )


@pytest.fixture
async def center(db: Database) -> AsyncIterator[Center]:
    async with FakeSlackWebAPI() as fake:
        settings = Settings.from_environ(
            {
                "FUSIONBOT_DATABASE_URL": db.url,
                "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
                "SLACK_SIGNING_SECRET": SECRET,
                "SLACK_API_URL": fake.url,
                "SLACK_CLIENT_ID": fake.client_id,
                "SLACK_CLIENT_SECRET": fake.client_secret,
            }
        )
        installations = slack_installations(settings, db)
        assert installations is not None
        await installations.create_tables()
        bot = build(
            settings,
            policy=parse_policy(POLICY),
            database=db,
            senders=platform_senders(settings, installations),
        )
        attach_installations(bot, installations)
        recorder = Recorder()
        app = create_slack_app(
            recorder, bot_token=DEFAULT_BOT_TOKEN, signing_secret=SECRET, api_url=fake.url
        )
        runner = await start_http(app, 0, installations=installations)
        try:
            async with aiohttp.ClientSession() as http:
                yield Center(
                    fake, bot, installations, http, f"http://127.0.0.1:{runner.addresses[0][1]}"
                )
        finally:
            await runner.cleanup()
            await bot.worker.stop()


def held_notices(fake: FakeSlackWebAPI) -> list[str]:
    return [str(m.get("text", "")) for m in fake.messages("C0REVIEW") if "are held" in str(m)]


async def test_install_link_carries_client_id_scopes_and_a_state(center: Center) -> None:
    location, query = await center.install_link()
    assert location.startswith("https://slack.com/oauth/v2/authorize?")
    assert query["client_id"] == [center.fake.client_id]
    assert query["scope"] == [
        "chat:write,commands,channels:history,groups:history,im:history,im:write,users:read,app_mentions:read"
    ]
    assert query["state"][0]
    _, again = await center.install_link()
    assert again["state"] != query["state"]  # one state per install attempt


async def test_install_send_revoke_hold_notice_reinstall(center: Center) -> None:
    fake = center.fake
    fake.add_pending_install(
        "code-1", team_id=PARTNER_TEAM, team_name="Metro PD", bot_token="xoxb-partner"
    )
    page = await center.install("code-1")
    assert "Installed in Metro PD" in page
    assert f"slack:{PARTNER_TEAM}/" in page
    assert await center.installations.token_for_team(PARTNER_TEAM) == "xoxb-partner"

    # An alert to the partner's channel goes out with the partner's token.
    await center.post_to_partner("first alert")
    await center.bot.drain(10)
    assert [m["text"] for m in fake.messages("C0PARTNER")] == ["first alert"]
    posts = [c for c in fake.calls_to("chat.postMessage") if c.params.get("channel") == "C0PARTNER"]
    assert [c.team_id for c in posts] == [PARTNER_TEAM]

    # The partner uninstalls: deliveries are held, and the analysts hear of it once.
    fake.revoke("xoxb-partner")
    await center.post_to_partner("second alert")
    await center.bot.drain(10)
    await center.post_to_partner("third alert")
    await center.bot.drain(10)
    async with center.bot.db.read() as conn:
        counts = await outbox_repo.count_by_state(conn)
    assert counts.get("held") == 2
    notices = held_notices(fake)
    assert len(notices) == 1, notices
    assert notices[0] == (
        f"Deliveries to {PARTNER_CHANNEL} are held: token_revoked. "
        "Reinstall fusionbot in that workspace (/slack/install); nothing is lost."
    )
    assert [m["text"] for m in fake.messages("C0PARTNER")] == ["first alert"]

    # Reinstalled: the held alerts go out, in order, with the new token.
    fake.add_pending_install(
        "code-2", team_id=PARTNER_TEAM, team_name="Metro PD", bot_token="xoxb-partner-2"
    )
    await center.install("code-2")
    assert await center.installations.token_for_team(PARTNER_TEAM) == "xoxb-partner-2"
    await center.bot.drain(10)
    assert [m["text"] for m in fake.messages("C0PARTNER")] == [
        "first alert",
        "second alert",
        "third alert",
    ]
    async with center.bot.db.read() as conn:
        counts = await outbox_repo.count_by_state(conn)
    assert "held" not in counts and "pending" not in counts
    assert len(held_notices(fake)) == 1


async def test_bad_or_missing_state_saves_nothing(center: Center) -> None:
    fake = center.fake
    fake.add_pending_install("code-x", team_id="T0OTHER", team_name="Other", bot_token="xoxb-o")
    for query in ({"code": "code-x", "state": "forged"}, {"code": "code-x"}):
        status, page = await center.redirect(**query)
        assert status == 400
        assert "Not installed" in page
    # A state is good once only.
    _, link = await center.install_link()
    state = link["state"][0]
    assert (await center.redirect(code="nope", state=state))[0] == 400  # Slack refuses the code
    assert (await center.redirect(code="code-x", state=state))[0] == 400  # state used up
    assert fake.calls_to("oauth.v2.access") and len(fake.calls_to("oauth.v2.access")) == 1
    assert await center.installations.token_for_team("T0OTHER") is None


async def test_not_installed_workspace_is_held_and_reported(center: Center) -> None:
    await center.post_to_partner("early alert")
    await center.bot.drain(10)
    notices = held_notices(center.fake)
    assert len(notices) == 1
    assert "not installed in Slack workspace T0PARTNER" in notices[0]
    center.fake.add_pending_install(
        "code-1", team_id=PARTNER_TEAM, team_name="Metro PD", bot_token="xoxb-partner"
    )
    await center.install("code-1")
    await center.bot.drain(10)
    assert [m["text"] for m in center.fake.messages("C0PARTNER")] == ["early alert"]


async def test_requests_from_another_workspace_name_its_channels() -> None:
    async with FakeSlackWebAPI() as fake:
        recorder = Recorder()
        app = create_slack_app(
            recorder,
            bot_token=DEFAULT_BOT_TOKEN,
            signing_secret=SECRET,
            api_url=fake.url,
            home_team=DEFAULT_TEAM_ID,
        )
        runner = await start_http(app, 0)
        try:
            async with aiohttp.ClientSession() as http:
                slack = Slack(http, f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events")
                home = block_actions("claim T-1", user="UANA", channel="C0REVIEW", trigger_id="1.2")
                partner = block_actions(
                    "feedback A-1 useful", user="UPARTNER", channel="C0PARTNER", trigger_id="1.3"
                )
                partner["team"] = {"id": PARTNER_TEAM, "domain": "partner"}
                for payload in (home, partner):
                    status, _, _ = await slack.interaction(payload)
                    assert status == 200
                body = urlencode(
                    {
                        "team_id": PARTNER_TEAM,
                        "channel_id": "C0PARTNER",
                        "user_id": "UPARTNER",
                        "command": "/fusion",
                        "text": "status",
                        "trigger_id": "1.4",
                    }
                )
                assert (await slack.post(body))[0] == 200
        finally:
            await runner.cleanup()
    seen = [(c.actor, c.channel) for c in recorder.commands]
    assert seen == [
        ("slack:UANA", "slack:C0REVIEW"),
        (f"slack:{PARTNER_TEAM}/UPARTNER", PARTNER_CHANNEL),
        (f"slack:{PARTNER_TEAM}/UPARTNER", PARTNER_CHANNEL),
    ], json.dumps(seen)
