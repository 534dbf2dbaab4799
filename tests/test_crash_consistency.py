"""Crash consistency of the real `fusionbot run` process: one alert fanned out to 300 Slack
partner channels while the bot is killed with SIGKILL again and again.

Kill points: right after the approve command is acknowledged (nothing sent yet), and then
at the k-th partner post as Slack's fake receives it, for k spread over the fan-out. The
kill happens inside the fake's handling of that post, before it answers: Slack has the
message, the bot never learns it did — the case the outbox's metadata check exists for.
Requests still in flight from a killed process are dropped unprocessed (they never reached
Slack). After every kill the bot is started again on the same database.

At the end every partner channel must hold the alert exactly once (by the outbox key in
the message metadata), every tip acknowledged before a kill must be in the database and
carded exactly once, and the audit chain must verify.

Figures go to tests/.reports/crash_consistency.json and are printed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select, update

from storage import outbox_repo
from storage.audit_repo import verify_audit
from storage.db import Database
from storage.tables import outbox, tips
from tests.conftest import reset_postgres
from tests.fakes.slack_web_api import FakeSlackWebAPI
from tests.test_slack_flow import fusionbot_run

PARTNERS = 60
CHANNELS_PER_PARTNER = 5  # 300 partner channels
REVIEW = "C0REVIEW"
INTAKE = "C0TIPS"
REPORTS = Path(__file__).resolve().parent / ".reports"
REPORT = REPORTS / "crash_consistency.json"
# The k-th partner post at which the bot is killed (after the kill right after approving).
KILL_AT = [1, 3, 10, 25, 50, 80, 120, 160, 200, 240, 275, 295, 299]


def partner_channel(p: int, c: int) -> str:
    return f"C0P{p:03d}X{c}"


PARTNER_CHANNELS = [
    partner_channel(p, c) for p in range(PARTNERS) for c in range(CHANNELS_PER_PARTNER)
]


def crash_policy() -> str:
    head = """
[center]
name = "Crash Test Fusion Center"
timezone = "America/New_York"
regions = ["north", "south", "downtown"]

[roles]
officers = ["*"]
analysts = ["slack:UANA"]
supervisors = ["slack:USAM"]
admins = ["slack:USAM"]

[[intake]]
channels = ["slack:C0TIPS"]

[[review]]
name = "general"
channels = ["slack:C0REVIEW"]
categories = ["*"]
"""
    partners = []
    for p in range(PARTNERS):
        channels = ", ".join(
            f'"slack:{partner_channel(p, c)}"' for c in range(CHANNELS_PER_PARTNER)
        )
        partners.append(
            f"""
[[partners]]
id = "partner-{p:03d}"
name = "Partner Agency {p:03d}"
sector = "local"
max_tlp = "AMBER"
channels = [{channels}]
"""
        )
    return head + "".join(partners)


class KillingSlack(FakeSlackWebAPI):
    """The Slack fake, plus two things only this test needs: partner posts can be held at
    the door (so a restarted bot can't finish the fan-out before the test is ready), and
    the bot process can be killed the moment Slack has accepted the k-th partner post."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.partner_channels = set(PARTNER_CHANNELS)
        self.door = asyncio.Event()
        self.victim: int | None = None
        self.kill_at: int | None = None
        self.dropped = 0  # requests of a killed process that never reached "Slack"
        self._turn = asyncio.Lock()
        self.post_delay = 0.0  # seconds each partner post takes, to make a fan-out last

    def partner_posts(self) -> int:
        return sum(len(self._posts.get(c, [])) for c in self.partner_channels)

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["method"] != "chat.postMessage":
            return await super()._handle(request)
        params, _ = await self._read_params(request)
        if params.get("channel") not in self.partner_channels:
            return await super()._handle(request)
        await self.door.wait()
        # One partner post at a time, so the kill lands exactly after the k-th.
        async with self._turn:
            if self.post_delay:
                await asyncio.sleep(self.post_delay)
            if (
                not self.door.is_set()
                or request.transport is None
                or request.transport.is_closing()
            ):
                # Sent by a process killed since: it never reached "Slack".
                self.dropped += 1
                return web.json_response({"ok": False, "error": "client_gone"})
            response = await super()._handle(request)
            if (
                self.victim is not None
                and self.kill_at is not None
                and self.partner_posts() >= self.kill_at
            ):
                # Slack has the message; the bot dies before it hears so.
                os.kill(self.victim, signal.SIGKILL)
                self.victim = None
                self.door.clear()
            return response


async def unrecorded(db: Database, fake: KillingSlack) -> int:
    """Alert copies Slack holds that the database doesn't know were sent: what a kill
    left for the restarted bot to find in the channel's history rather than send again."""
    async with db.read() as conn:
        rows = await conn.execute(
            select(outbox.c.target).where(
                outbox.c.message_key == "alert:1", outbox.c.state != outbox_repo.SENT
            )
        )
        return sum(1 for r in rows if fake.posts(r.target.removeprefix("slack:")))


async def expire_leases(db: Database) -> int:
    """The bot is dead, so its outbox leases (5 minutes) would run out while it is down;
    instead of waiting 5 minutes the test ends them now, which is all waiting would do."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    async with db.transaction() as conn:
        result = await conn.execute(
            update(outbox).where(outbox.c.state == outbox_repo.SENDING).values(lease_until=past)
        )
        return int(result.rowcount or 0)


def metadata_key(post: dict[str, Any]) -> str | None:
    payload = (post.get("metadata") or {}).get("event_payload") or {}
    return payload.get("key")


async def test_sigkill_during_an_alert_fan_out_loses_and_doubles_nothing(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    if backend == "postgresql":
        await reset_postgres(database_url)
    db = Database(database_url)
    policy = crash_policy()
    env = {"FUSIONBOT_DATABASE_URL": database_url}
    started = time.monotonic()
    filed: list[str] = []  # tips acknowledged to the officer before some kill
    kill_points: list[dict[str, Any]] = []
    runs = 0

    async def file_tip(slack: Any, fake: KillingSlack) -> None:
        summary = f"Crash tip {len(filed) + 1}: van idling by gate {len(filed) + 1}"
        status, body, _ = await slack.command(
            "/tip",
            f"{summary} | category: survl",
            user=f"UOFF{len(filed) + 1:03d}",
            channel=INTAKE,
            trigger_id=fake.issue_trigger_id(),
        )
        assert (status, body) == (200, ""), (status, body)
        filed.append(summary)

    try:
        async with KillingSlack(per_channel_per_second=50.0, burst=10) as fake:

            def bot():
                nonlocal runs
                runs += 1
                return fusionbot_run(
                    tmp_path, fake, policy, env=env, log_name=f"bot-{runs}.log", may_be_killed=True
                )

            # Run 1: a tip, claimed and approved to every partner; killed right after the
            # approve is acknowledged, with every partner post still at Slack's door.
            async with bot() as (slack, process, _):
                await file_tip(slack, fake)
                for text in ("claim T-1", "approve T-1 tlp:green to:all now confirm"):
                    status, _, _ = await slack.command(
                        "/fusion",
                        text,
                        user="USAM",
                        channel=REVIEW,
                        trigger_id=fake.issue_trigger_id(),
                    )
                    assert status == 200
                process.kill()
                await process.wait()
            kill_points.append({"at": "right after approve", "partner_posts": 0})
            async with db.read() as conn:
                queued = (
                    await conn.execute(
                        select(outbox.c.key, outbox.c.target).where(
                            outbox.c.message_key == "alert:1"
                        )
                    )
                ).all()
            # The approve committed the alert and all 300 copies before it was acknowledged.
            assert len(queued) == len(PARTNER_CHANNELS)
            keys = {target.removeprefix("slack:"): key for key, target in queued}
            assert set(keys) == set(PARTNER_CHANNELS)

            # Runs 2..: a tip filed, then the door opens and the bot dies at the k-th post.
            for k in KILL_AT:
                await expire_leases(db)
                async with bot() as (slack, process, _):
                    await file_tip(slack, fake)
                    fake.kill_at = max(k, fake.partner_posts() + 1)
                    fake.victim = process.pid
                    fake.door.set()
                    await asyncio.wait_for(process.wait(), 60)
                kill_points.append(
                    {
                        "at": f"partner post {fake.kill_at}",
                        "partner_posts": fake.partner_posts(),
                        "sent_but_unrecorded": await unrecorded(db, fake),
                    }
                )
                fake.kill_at = None

            # The last run: no kill; everything must arrive, once.
            await expire_leases(db)
            fake.door.set()
            async with bot() as (slack, process, log):
                await file_tip(slack, fake)

                async def settled() -> bool:
                    if any(not fake.posts(c) for c in PARTNER_CHANNELS):
                        return False
                    async with db.read() as conn:
                        waiting = await outbox_repo.waiting_by_platform(conn)
                    return not waiting.get("slack")

                await _until_async(settled, 60)
                await asyncio.sleep(1.5)  # a late duplicate would show by now
            final_log = log.read_text()

            # ---- every partner channel: the alert exactly once, under its outbox key
            per_channel = {
                c: Counter(metadata_key(p) for p in fake.posts(c)) for c in PARTNER_CHANNELS
            }
            lost = sorted(c for c in PARTNER_CHANNELS if per_channel[c][keys[c]] == 0)
            doubled = sorted(c for c in PARTNER_CHANNELS if per_channel[c][keys[c]] > 1)
            strays = sorted(c for c in PARTNER_CHANNELS if set(per_channel[c]) - {keys[c]})
            # ---- every tip acknowledged before a kill is filed, and carded once
            async with db.read() as conn:
                stored = {r.summary for r in await conn.execute(select(tips.c.summary))}
                audit = await verify_audit(conn)
            missing_tips = [s for s in filed if s not in stored]
            cards = Counter(metadata_key(p) for p in fake.posts(REVIEW))
            card_keys = [k for k in cards if k is not None]
            doubled_cards = sorted(k for k, n in cards.items() if n > 1)
    finally:
        await db.dispose()

    figures = {
        "backend": backend,
        "partner_channels": len(PARTNER_CHANNELS),
        "runs": runs,
        "kill_points_tried": len(kill_points),
        "kill_points": kill_points,
        "in_flight_requests_dropped_by_kills": fake.dropped,
        "messages_checked": len(PARTNER_CHANNELS) + len(card_keys),
        "partner_posts_accepted": sum(sum(c.values()) for c in per_channel.values()),
        "history_checks": len(fake.calls_to("conversations.history")),
        "sent_but_unrecorded_at_kills": sum(k.get("sent_but_unrecorded", 0) for k in kill_points),
        "tips_filed_before_kills": len(filed),
        "tips_missing": len(missing_tips),
        "duplicates": len(doubled) + len(doubled_cards),
        "losses": len(lost),
        "seconds": round(time.monotonic() - started, 1),
    }
    REPORTS.mkdir(exist_ok=True)
    report = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    report[backend] = figures
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    with capsys.disabled():  # shown in every run, not only with -s
        print(
            f"\ncrash consistency ({backend}): "
            + json.dumps({k: v for k, v in figures.items() if k != "kill_points"})
        )

    assert (lost, doubled, strays) == ([], [], []), figures
    assert missing_tips == [] and len(stored) == len(filed), (missing_tips, stored)
    assert len(card_keys) == len(filed) and doubled_cards == [], cards
    assert audit.ok, audit.problems
    assert "Traceback" not in final_log, final_log[-3000:]
    # The kills hit the fan-out where intended: mid-way, with copies Slack had taken that
    # the bot had not recorded (so the restarted bot had to find them in the history).
    assert len(kill_points) == len(KILL_AT) + 1
    assert figures["sent_but_unrecorded_at_kills"] >= len(KILL_AT) // 2, kill_points


async def _until_async(check: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("the outbox did not settle in time")
        await asyncio.sleep(0.1)
