"""Faults during an alert's fan-out, and the bot keeps serving, queues what it can't send,
and catches up with nothing lost or doubled.

Already covered elsewhere, and not repeated here: each Slack answer's mapping to the
outbox's errors (test_slack_sender.py), 429 storms and 500s on review cards from a real
process (test_slack_load.py), crashes around a send with a stand-in platform
(test_outbox.py), SIGKILL during a fan-out (test_crash_consistency.py).

Added here:
- one alert to 40 Slack partner channels meeting, in one run, 500s, client timeouts whose
  posts still land, ``ratelimited`` as an HTTP 200 error without Retry-After, and a 429
  storm that starts mid-fan-out; meanwhile the console goes on answering;
- the real `fusionbot run` on PostgreSQL fanning an alert out to 300 channels while the
  test keeps terminating every connection the bot holds (pg_terminate_backend), and
  officers keep filing tips.

The number of faults injected is printed and written to tests/.reports/faults.json."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.slack.sender import SlackSender
from bot.policy_loader import parse_policy
from commands.context import Command
from storage import outbox_repo
from storage.audit_repo import load_audit, verify_audit
from storage.db import Database
from storage.tables import outbox, tips
from tests.conftest import reset_postgres
from tests.fakes.slack_web_api import DEFAULT_BOT_TOKEN, FakeSlackWebAPI, SlackError
from tests.harness import ConsoleHarness, lines_for
from tests.policies import ONE_REVIEW_POLICY
from tests.test_crash_consistency import PARTNER_CHANNELS, KillingSlack, crash_policy
from tests.test_slack_flow import fusionbot_run

REPORTS = Path(__file__).resolve().parent / ".reports"
FAN_OUT = 40


def record(name: str, figures: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    REPORTS.mkdir(exist_ok=True)
    path = REPORTS / "faults.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    report[name] = figures
    path.write_text(json.dumps(report, indent=2) + "\n")
    with capsys.disabled():  # shown in every run, not only with -s
        print(f"\nfaults ({name}): {json.dumps(figures)}")


class FaultySlack(FakeSlackWebAPI):
    """The Slack fake, counting every fault it answered with, plus two it lacks: a
    `ratelimited` error in an HTTP 200 (no Retry-After), and a 429 storm that begins
    when the n-th partner post has been accepted."""

    def __init__(self, partner_channels: set[str], **options: Any) -> None:
        super().__init__(**options)
        self.partner_channels = partner_channels
        self.faults: Counter[str] = Counter()
        self.ok_false_ratelimited = 0
        self.storm_after: tuple[int, float] | None = None

    def partner_posts(self) -> int:
        return sum(len(self._posts.get(c, [])) for c in self.partner_channels)

    async def _misbehave(self, method: str) -> None:
        if self._storm_until is not None and self._clock() < self._storm_until:
            self.faults["429 storm"] += 1
        elif method == "chat.postMessage" and self.ok_false_ratelimited > 0:
            self.ok_false_ratelimited -= 1
            self.faults["ratelimited (HTTP 200)"] += 1
            raise SlackError("ratelimited")
        await super()._misbehave(method)

    def _take_fault(self, method: str) -> Any:
        fault = super()._take_fault(method)
        if fault is not None:
            kind = f"HTTP {fault.status}" if fault.status else fault.error or "slow answer"
            self.faults[f"{method} {kind}"] += 1
        return fault

    def _chat_post_message(self, ctx: Any) -> dict[str, Any]:
        answer = super()._chat_post_message(ctx)
        if self.storm_after is not None and self.partner_posts() >= self.storm_after[0]:
            self.rate_limit_storm(self.storm_after[1])
            self.storm_after = None
        return answer


def fan_out_policy(channels: list[str]) -> str:
    partners = "".join(
        f"""
[[partners]]
id = "partner-{n:02d}"
name = "Partner {n:02d}"
sector = "local"
max_tlp = "AMBER"
channels = ["slack:{channel}"]
"""
        for n, channel in enumerate(channels)
    )
    return ONE_REVIEW_POLICY + partners


async def test_slack_faults_during_a_fan_out_lose_and_double_nothing(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    channels = [f"C0FAN{n:02d}" for n in range(FAN_OUT)]
    started = time.monotonic()
    async with FaultySlack(set(channels), per_channel_per_second=50.0, burst=10) as slack:
        # A client that gives up after 1 s, so a slow Slack is a timeout here (30 s in
        # production is the same path, only slower).
        client = AsyncWebClient(token=DEFAULT_BOT_TOKEN, base_url=slack.url, timeout=1)
        h = ConsoleHarness(
            db,
            policy=parse_policy(fan_out_policy(channels), "faults-policy.toml"),
            extra_senders={"slack": SlackSender(client)},
        )
        await h.say("@olly #tips !tip Drone over the rail yard | category: survl")
        await h.say("@sam #review !claim T-1")

        slack.fail_next("chat.postMessage", status=500, times=4)
        slack.fail_next("chat.postMessage", status=503, times=2)
        # Answered after the client gave up: Slack posted them all the same.
        slack.fail_next("chat.postMessage", delay=1.5, times=3)
        slack.ok_false_ratelimited = 3
        slack.storm_after = (FAN_OUT // 2, 2.0)

        # The release itself is answered on the console at once; Slack copies are queued.
        before = len(h.printed)
        await h.bot.handle(
            Command(
                actor="console:sam",
                channel="console:#review",
                text="!approve T-1 tlp:green to:all now confirm",
            )
        )
        await h.bot.drain(0.5)
        assert any("released as A-1" in line for line in lines_for(h.printed[before:], "@sam"))

        # During the storm the console keeps answering, and Slack's copies wait.
        served_during_storm = 0
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if slack._storm_until is not None and slack._clock() < slack._storm_until:
                out = await h.say("@ana #review !status")
                assert out and out[0].startswith("@ana "), out
                served_during_storm += 1
                async with db.read() as conn:
                    assert (await outbox_repo.waiting_by_platform(conn)).get("slack", 0) > 0
            await h.bot.drain(0.5)
            async with db.read() as conn:
                if not (await outbox_repo.waiting_by_platform(conn)).get("slack"):
                    break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.6)  # the last slow answer lands; a doubled post would show

        keys = await alert_keys(db)
        per_channel = {c: Counter(post_key(p) for p in slack.posts(c)) for c in channels}
        lost = [c for c in channels if per_channel[c][keys[c]] == 0]
        doubled = [c for c in channels if per_channel[c][keys[c]] > 1]
        async with db.read() as conn:
            states = await outbox_repo.count_by_state(conn)
            failed = [e for e in await load_audit(conn) if e.action == "delivery.failed"]
    figures = {
        "channels": FAN_OUT,
        "faults_injected": sum(slack.faults.values()),
        "faults": dict(slack.faults),
        "history_checks": len(slack.calls_to("conversations.history")),
        "console_commands_served_during_storm": served_during_storm,
        "duplicates": len(doubled),
        "losses": len(lost),
        "seconds": round(time.monotonic() - started, 1),
    }
    record(f"slack fan-out ({db.dialect})", figures, capsys)
    assert (lost, doubled) == ([], []), figures
    assert failed == [] and set(states) == {outbox_repo.SENT}, states
    # Every kind of fault was met, and the storm while the console was in use.
    assert slack.faults["chat.postMessage HTTP 500"] == 4
    assert slack.faults["chat.postMessage HTTP 503"] == 2
    assert slack.faults["chat.postMessage slow answer"] == 3
    assert slack.faults["ratelimited (HTTP 200)"] == 3
    assert slack.faults["429 storm"] > 0 and served_during_storm > 0, figures
    assert figures["history_checks"] >= 3  # the timed-out posts were looked for, not resent


async def alert_keys(db: Database) -> dict[str, str]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(outbox.c.key, outbox.c.target).where(outbox.c.message_key == "alert:1")
        )
        return {target.removeprefix("slack:"): key for key, target in rows}


def post_key(post: dict[str, Any]) -> str | None:
    return ((post.get("metadata") or {}).get("event_payload") or {}).get("key")


# ------------------------------------------------------------ PostgreSQL connections cut


async def terminate_bot_connections(url: str) -> int:
    """End every other session on the bot's database, as a failover or a DBA would."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            return sum(1 for (ok,) in result if ok)
    finally:
        await engine.dispose()


async def test_postgres_connections_cut_during_a_fan_out(
    private_postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real process on PostgreSQL fans an alert out to 300 channels (one partner post
    at a time, so the fan-out lasts) while every connection it holds is terminated again
    and again, and officers file tips the whole time. Afterwards: every channel has the
    alert once, every tip the bot confirmed is filed and carded once, the audit chain
    holds, and the process is still serving and stops cleanly."""
    url = private_postgres_url
    await reset_postgres(url)
    db = Database(url)
    started = time.monotonic()
    terminated = 0
    cuts = 0
    confirmed: list[str] = []
    refused: list[str] = []
    try:
        async with (
            KillingSlack(per_channel_per_second=50.0, burst=10) as fake,
            fusionbot_run(tmp_path, fake, crash_policy(), env={"FUSIONBOT_DATABASE_URL": url}) as (
                slack,
                _process,
                log,
            ),
        ):
            fake.post_delay = 0.02  # 300 posts take about 6 s: time for many cuts
            fake.door.set()
            await slack.command(
                "/tip",
                "Van at the depot | category: survl",
                user="UOFF",
                channel="C0TIPS",
                trigger_id=fake.issue_trigger_id(),
            )
            for command in ("claim T-1", "approve T-1 tlp:green to:all now confirm"):
                status, _, _ = await slack.command(
                    "/fusion",
                    command,
                    user="USAM",
                    channel="C0REVIEW",
                    trigger_id=fake.issue_trigger_id(),
                )
                assert status == 200

            async def file_tips() -> None:
                for n in range(12):
                    user = f"UOFC{n:02d}"
                    status, body, took = await slack.command(
                        "/tip",
                        f"Cut tip {n}: person at gate {n}",
                        user=user,
                        channel="C0TIPS",
                        trigger_id=fake.issue_trigger_id(),
                    )
                    # Acknowledged within Slack's 3 s even while connections are cut.
                    assert (status, body) == (200, "") and took < 3.0, (status, took)
                    await asyncio.sleep(0.4)

            tipping = asyncio.create_task(file_tips())
            # Cut until most of the fan-out is done (or a while has passed).
            deadline = time.monotonic() + 20
            while (
                fake.partner_posts() < len(PARTNER_CHANNELS) * 0.9 and time.monotonic() < deadline
            ):
                terminated += await terminate_bot_connections(url)
                cuts += 1
                await asyncio.sleep(0.2)
            await tipping
            posts_when_cuts_stopped = fake.partner_posts()

            async def settled() -> bool:
                async with db.read() as conn:
                    waiting = await outbox_repo.waiting_by_platform(conn)
                return not waiting.get("slack") and all(fake.posts(c) for c in PARTNER_CHANNELS)

            deadline = time.monotonic() + 60
            while not await settled():
                assert time.monotonic() < deadline, "the bot did not catch up"
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.5)
            # Still serving: a command after all that is answered.
            before = len(fake.ephemerals("C0REVIEW"))
            await slack.command(
                "/fusion",
                "status",
                user="USAM",
                channel="C0REVIEW",
                trigger_id=fake.issue_trigger_id(),
            )
            deadline = time.monotonic() + 15
            while len(fake.ephemerals("C0REVIEW")) <= before:
                assert time.monotonic() < deadline, "no answer after the cuts"
                await asyncio.sleep(0.1)
            for e in fake.ephemerals("C0TIPS"):
                answer = str(e.get("text"))
                (confirmed if "Received T-" in answer else refused).append(answer)
        bot_log = log.read_text()

        async with db.read() as conn:
            keys = {
                target.removeprefix("slack:"): key
                for key, target in await conn.execute(
                    select(outbox.c.key, outbox.c.target).where(outbox.c.message_key == "alert:1")
                )
            }
            stored = (await conn.execute(select(tips.c.id))).scalars().all()
            audit = await verify_audit(conn)
    finally:
        with contextlib.suppress(Exception):
            await db.dispose()

    per_channel = {c: Counter(post_key(p) for p in fake.posts(c)) for c in PARTNER_CHANNELS}
    lost = [c for c in PARTNER_CHANNELS if per_channel[c][keys[c]] == 0]
    doubled = [c for c in PARTNER_CHANNELS if per_channel[c][keys[c]] > 1]
    confirmed_ids = sorted(
        int(a.split("Received T-")[1].split()[0].strip(".,:")) for a in confirmed
    )
    cards = Counter(post_key(p) for p in fake.posts("C0REVIEW"))
    figures = {
        "channels": len(PARTNER_CHANNELS),
        "connection_cuts": cuts,
        "backends_terminated": terminated,
        "partner_posts_when_cuts_stopped": posts_when_cuts_stopped,
        "tips_confirmed": len(confirmed),
        "tips_refused_with_try_again": len(refused),
        "bot_error_log_lines": sum(" ERROR " in line for line in bot_log.splitlines()),
        "duplicates": len(doubled) + sum(1 for n in cards.values() if n > 1),
        "losses": len(lost),
        "seconds": round(time.monotonic() - started, 1),
    }
    record("postgresql connections cut", figures, capsys)
    assert (lost, doubled) == ([], []), figures
    assert cuts >= 10 and terminated >= cuts, figures
    assert posts_when_cuts_stopped < len(PARTNER_CHANNELS), "the cuts never met the fan-out"
    # Each officer heard back: received, or (if the cut hit their command) to try again;
    # when even finding out whether a cut-off commit happened failed, that it may have
    # (then its receipt may come too).
    unknown = [r for r in refused if "can't tell whether it was saved" in r]
    assert 13 <= len(confirmed) + len(refused) <= 13 + len(unknown), (confirmed, refused)
    assert all("nothing was changed" in r for r in refused if r not in unknown), refused
    assert set(confirmed_ids) <= set(stored) and len(stored) == len(confirmed), (
        confirmed_ids,
        stored,
    )
    assert [k for k, n in cards.items() if n > 1] == [] and len(cards) == len(stored), cards
    assert audit.ok, audit.problems
