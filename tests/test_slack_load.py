"""The real `fusionbot run` process under load on Slack: a burst of /tip beyond a channel's
pace, a 429 storm, and 500s from chat.postMessage. Every request is acked within Slack's
3 s, every card reaches the review channel exactly once, and the app manifest matches what
the process serves."""

from __future__ import annotations

import asyncio
import contextlib
import re
import statistics
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.slack.http import EVENTS_PATH
from adapters.slack.sender import CHANNEL_INTERVAL
from tests.fakes.slack_web_api import FakeSlackWebAPI
from tests.test_cli import ROOT
from tests.test_slack_app import Slack
from tests.test_slack_flow import fusionbot_run, until

REVIEW = "C0REVIEW"
INTAKE = "C0TIPS"
ACK_BUDGET = 3.0  # Slack's limit for acknowledging a slash command
CARD = re.compile(r"\bT-(\d+) · NEW\b")
MANIFEST = ROOT / "adapters" / "slack" / "manifest.yaml"


@contextlib.asynccontextmanager
async def running_bot(
    tmp_path: Path, **fake_options: Any
) -> AsyncIterator[tuple[FakeSlackWebAPI, Slack]]:
    """`fusionbot run` as a real process against a fake Slack built with `fake_options`
    (e.g. a faster pace than Slack's)."""
    async with (
        FakeSlackWebAPI(**fake_options) as fake,
        fusionbot_run(tmp_path, fake) as (slack, _, _),
    ):
        yield fake, slack


def card_counts(fake: FakeSlackWebAPI, channel: str = REVIEW) -> Counter[int]:
    """How many accepted chat.postMessage calls carried each tip's new card. A post counts
    once per tip however often its text and blocks repeat the header, so a coalesced post
    of several cards counts once for each."""
    counts: Counter[int] = Counter()
    for post in fake.posts(channel):
        shown = str(post.get("text", "")) + str(post.get("blocks", ""))
        counts.update({int(n) for n in CARD.findall(shown)})
    return counts


def refused_posts(fake: FakeSlackWebAPI) -> int:
    """chat.postMessage calls the fake refused (429 here: no other fault is injected)."""
    channels = {str(call.params.get("channel")) for call in fake.calls_to("chat.postMessage")}
    accepted = sum(len(fake.posts(channel)) for channel in channels)
    return len(fake.calls_to("chat.postMessage")) - accepted


def acked(answer: tuple[int, str, float]) -> bool:
    """An empty 200 within Slack's 3 s: bolt acked the command and said nothing more."""
    status, body, latency = answer
    return status == 200 and body == "" and latency < ACK_BUDGET


async def warm_up(slack: Slack, fake: FakeSlackWebAPI) -> None:
    """One request first, so the storm meets a bot already serving requests."""
    answer = await slack.command(
        "/fusion", "help", user="UANA", channel=REVIEW, trigger_id=fake.issue_trigger_id()
    )
    assert acked(answer), answer
    await until(lambda: fake.ephemerals(REVIEW))


async def file_tip(slack: Slack, fake: FakeSlackWebAPI, n: int) -> tuple[int, str, float]:
    return await slack.command(
        "/tip",
        f"Load tip {n}: person photographing the substation fence | location: gate {n}",
        user=f"UOFF{n:03d}",
        channel=INTAKE,
        trigger_id=fake.issue_trigger_id(),
    )


def exactly_once(fake: FakeSlackWebAPI, tips: int) -> bool:
    return card_counts(fake) == Counter(dict.fromkeys(range(1, tips + 1), 1))


def assert_each_card_once(fake: FakeSlackWebAPI, tips: int) -> None:
    counts = card_counts(fake)
    missing = sorted(set(range(1, tips + 1)) - set(counts))
    doubled = sorted(n for n, c in counts.items() if c > 1)
    extra = sorted(set(counts) - set(range(1, tips + 1)))
    assert (missing, doubled, extra) == ([], [], []), f"lost / doubled / unexpected: {counts}"


async def test_burst_beyond_the_channel_pace_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    """10 tips a second for 3 s into one review channel. The fake paces chat.postMessage at
    5/s per channel, burst 1, and answers 429 to everything for one second mid-burst.

    The sender paces each channel at Slack's ~1 message/s itself (CHANNEL_INTERVAL), so it
    never outruns the fake's 5/s: the 429s come from the storm, and catching up takes about
    one second per card."""
    rate, seconds = 10, 3
    tips = rate * seconds
    async with running_bot(tmp_path, per_channel_per_second=5.0, burst=1) as (fake, slack):
        loop = asyncio.get_running_loop()
        started = loop.time()
        requests = []
        for n in range(1, tips + 1):
            # On schedule, not after the previous answer: acks are measured under load.
            await asyncio.sleep(max(0.0, started + (n - 1) / rate - loop.time()))
            if n == tips // 2:
                fake.rate_limit_storm(1)
            requests.append(asyncio.create_task(file_tip(slack, fake, n)))
        answers = await asyncio.gather(*requests)
        latencies = sorted(latency for _, _, latency in answers)
        print(
            f"\n/tip ack, {tips} requests at {rate}/s: "
            f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
            f"max {latencies[-1] * 1000:.0f} ms"
        )
        assert all(acked(answer) for answer in answers), answers

        # As fast as the pace allows: one card per CHANNEL_INTERVAL, plus the storm's wait.
        budget = tips * CHANNEL_INTERVAL + 8
        await until(lambda: len(card_counts(fake)) >= tips, seconds=budget)
        print(
            f"review channel complete {loop.time() - started:.1f} s after the first tip; "
            f"{refused_posts(fake)} chat.postMessage calls answered 429"
        )
        await asyncio.sleep(1.5)  # a late duplicate would show up by now
        assert_each_card_once(fake, tips)
        assert refused_posts(fake) > 0, "no chat.postMessage met the storm"
        # Every officer got a receipt, once.
        await until(lambda: len(fake.ephemerals(INTAKE)) >= tips, seconds=budget)
        receipts = Counter(e["user"] for e in fake.ephemerals(INTAKE))
        assert receipts == Counter({f"UOFF{n:03d}": 1 for n in range(1, tips + 1)})


async def test_cards_filed_during_a_429_storm_arrive_after_it_once_each(tmp_path: Path) -> None:
    tips = 5
    async with running_bot(tmp_path) as (fake, slack):
        await warm_up(slack, fake)
        loop = asyncio.get_running_loop()
        fake.rate_limit_storm(3)
        storm_ends = loop.time() + 3
        answers = await asyncio.gather(*(file_tip(slack, fake, n) for n in range(1, tips + 1)))
        assert all(acked(answer) for answer in answers), answers

        await asyncio.sleep(max(0.0, storm_ends - 0.3 - loop.time()))
        assert fake.posts(REVIEW) == []  # nothing got through the storm
        assert refused_posts(fake) > 0  # but the bot tried, and was told to wait

        await until(lambda: exactly_once(fake, tips), seconds=30)
        await asyncio.sleep(1.5)
        assert_each_card_once(fake, tips)


async def test_a_tip_during_a_storm_right_after_start_is_filed(tmp_path: Path) -> None:
    """The first request after start, during a 429 storm, is still acked and filed (the bot
    asks auth.test at start, not on the first request as bolt would)."""
    async with running_bot(tmp_path) as (fake, slack):
        fake.rate_limit_storm(2)
        answer = await file_tip(slack, fake, 1)
        assert acked(answer), answer
        await until(lambda: exactly_once(fake, 1), seconds=15)


async def test_500s_from_slack_are_retried_without_doubling(tmp_path: Path) -> None:
    """Two 500s: the outbox retries with backoff and, because the attempt's outcome was
    uncertain, asks Slack (conversations.history with the message metadata) before sending
    again. A delay beyond the client's timeout is left out: slack_sdk's timeout is 30 s."""
    tips = 3
    async with running_bot(tmp_path, per_channel_per_second=5.0, burst=1) as (fake, slack):
        await warm_up(slack, fake)
        fake.fail_next("chat.postMessage", status=500, times=2)
        answers = await asyncio.gather(*(file_tip(slack, fake, n) for n in range(1, tips + 1)))
        assert all(acked(answer) for answer in answers), answers

        await until(lambda: len(card_counts(fake)) >= tips, seconds=30)
        await asyncio.sleep(1.5)
        assert_each_card_once(fake, tips)
        assert fake.calls_to("conversations.history"), "no check for an earlier copy"
        assert len(fake.calls_to("chat.postMessage")) >= len(fake.posts(REVIEW)) + 2


def test_manifest_names_the_commands_and_the_path_the_app_serves() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert manifest["display_information"]["name"] == "fusionbot"
    features = manifest["features"]
    assert features["bot_user"]["display_name"]
    commands = {c["command"]: c for c in features["slash_commands"]}
    assert set(commands) == {"/tip", "/fusion"}
    assert all(c["url"].endswith(EVENTS_PATH) and c["usage_hint"] for c in commands.values())
    settings = manifest["settings"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["interactivity"]["request_url"].endswith(EVENTS_PATH)
    events = settings["event_subscriptions"]
    assert events["request_url"].endswith(EVENTS_PATH)
    assert set(events["bot_events"]) == {"message.im", "app_mention"}
    assert settings["socket_mode_enabled"] is False
    assert settings["org_deploy_enabled"] is False
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert scopes >= {
        "chat:write",
        "commands",
        "channels:history",
        "groups:history",
        "im:history",  # message.im needs it
        "im:write",
        "users:read",
        "app_mentions:read",  # app_mention needs it
    }
    redirects = manifest["oauth_config"]["redirect_urls"]
    assert redirects == ["https://fusionbot.example.org/slack/oauth_redirect"]
    # One public origin for every URL Slack calls.
    urls = [*(c["url"] for c in commands.values()), *redirects]
    urls += [settings["interactivity"]["request_url"], events["request_url"]]
    assert {u.split("/slack/")[0] for u in urls} == {"https://fusionbot.example.org"}
