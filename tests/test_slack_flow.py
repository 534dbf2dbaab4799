"""The real `fusionbot run` process on Slack: signed requests in, Web API calls out to a
local fake of Slack. Tip -> card -> claim button -> approve -> alert in the right
channels only; an unauthorised click changes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.slack_web_api import DEFAULT_BOT_TOKEN, FakeSlackWebAPI
from tests.matrix_server.synapse import free_port
from tests.test_cli import ROOT
from tests.test_slack_app import SECRET, Slack, block_actions

POLICY = """
[center]
name = "Test Fusion Center"
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

[[partners]]
id = "metro-pd"
name = "Metro Police Department"
sector = "local"
max_tlp = "AMBER"
caveats = ["LES"]
channels = ["slack:C0METRO"]

[[partners]]
id = "transit"
name = "Regional Transit Authority"
sector = "private"
max_tlp = "GREEN"
channels = ["slack:C0TRANSIT"]
"""


async def until(check: Any, seconds: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for Slack to show it")
        await asyncio.sleep(0.05)


def bot_environment(
    tmp_path: Path, fake: FakeSlackWebAPI, policy_text: str = POLICY, **more: str
) -> dict[str, str]:
    """The environment of a `fusionbot run` on a fresh SQLite file, Slack at the fake."""
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text)
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "FUSIONBOT_POLICY": str(policy),
        "FUSIONBOT_DATA_DIR": str(tmp_path / "data"),
        "FUSIONBOT_DATABASE_URL": "",
        "SLACK_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake.url,
        **more,
    }


@contextlib.asynccontextmanager
async def fusionbot_run(
    tmp_path: Path,
    fake: FakeSlackWebAPI,
    policy_text: str = POLICY,
    *extra: str,
    env: Mapping[str, str] | None = None,
    log_name: str = "bot.log",
    may_be_killed: bool = False,
) -> AsyncIterator[tuple[Slack, asyncio.subprocess.Process, Path]]:
    """`fusionbot run` as a real process with Slack pointed at the fake; stdin is a pipe
    (for --console) and stdout/stderr go to a log file. `env` adds to the environment
    (e.g. FUSIONBOT_DATABASE_URL); with `may_be_killed` the test may SIGKILL it (crash
    tests); otherwise it must exit cleanly when stopped."""
    port = free_port()
    env = bot_environment(
        tmp_path, fake, policy_text, FUSIONBOT_HTTP_PORT=str(port), **dict(env or {})
    )
    log = tmp_path / log_name
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            *extra,
            cwd=tmp_path,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=output,
            stderr=output,
        )
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{port}"

            async def healthy() -> bool:
                try:
                    async with session.get(f"{base}/healthz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            for _ in range(400):
                if process.returncode is not None:
                    raise AssertionError(log.read_text())
                if await healthy():
                    break
                await asyncio.sleep(0.05)
            yield Slack(session, f"{base}/slack/events"), process, log
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 20)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        if not (may_be_killed and process.returncode == -signal.SIGKILL):
            assert process.returncode == 0, log.read_text()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[FakeSlackWebAPI, Slack]]:
    async with FakeSlackWebAPI() as fake, fusionbot_run(tmp_path, fake) as (slack, _, _):
        yield fake, slack


def texts(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("text", "")) + str(m.get("blocks", "")) for m in messages)


async def test_tip_to_alert_through_slack(running: tuple[FakeSlackWebAPI, Slack]) -> None:
    fake, slack = running
    status, body, _ = await slack.command(
        "/tip",
        "Man photographing the substation fence <!channel> | category: photo | location: 5th & Main",
        user="UOLLY",
        channel="C0TIPS",
        trigger_id=fake.issue_trigger_id(),
    )
    assert status == 200 and body == ""

    cards = await until(lambda: fake.messages("C0REVIEW"))
    card = cards[0]
    assert "T-1 · NEW" in texts([card])
    assert "&lt;!channel&gt;" in texts([card]) and "<!channel>" not in texts([card])
    receipt = await until(lambda: fake.ephemerals("C0TIPS"))
    assert "Received T-1" in texts(receipt) and receipt[0]["user"] == "UOLLY"
    # What the officer is told to type works where they are: a slash command (a "!status"
    # typed in a Slack channel never reaches the bot).
    assert "Follow it with /fusion status T-1." in texts(receipt)

    # An officer clicking the card's Claim button is refused, privately; nothing changes.
    status, _, _ = await slack.interaction(
        block_actions(
            "claim T-1", user="UOLLY", channel="C0REVIEW", trigger_id=fake.issue_trigger_id()
        )
    )
    assert status == 200
    refusal = await until(lambda: [e for e in fake.ephemerals("C0REVIEW") if e["user"] == "UOLLY"])
    assert "Only the center's analysts" in texts(refusal)
    assert fake.updates("C0REVIEW") == []

    # The analyst clicks Claim: the same card is edited in place.
    await slack.interaction(
        block_actions(
            "claim T-1", user="UANA", channel="C0REVIEW", trigger_id=fake.issue_trigger_id()
        )
    )
    await until(lambda: "CLAIMED" in texts(fake.messages("C0REVIEW")))
    assert len(fake.messages("C0REVIEW")) == 1

    await slack.command(
        "/fusion",
        "approve T-1 tlp:amber caveat:LES to:metro-pd,transit confirm",
        user="UANA",
        channel="C0REVIEW",
        trigger_id=fake.issue_trigger_id(),
    )
    alert = await until(lambda: fake.messages("C0METRO"))
    assert "TLP:AMBER // LES" in texts(alert) and "A-1" in texts(alert)
    assert "Feedback: /fusion feedback A-1 useful|not-useful" in texts(alert)
    assert "!feedback" not in texts(alert)
    await until(lambda: "APPROVED" in texts(fake.messages("C0REVIEW")))
    assert fake.messages("C0TRANSIT") == []  # cleared only to GREEN
    assert len(fake.messages("C0REVIEW")) == 1  # still one card, edited
    # A partner clicks Useful on the alert; the officer who filed the tip hears of it.
    buttons = [
        e["value"]
        for block in alert[0]["blocks"]
        if block["type"] == "actions"
        for e in block["elements"]
    ]
    assert buttons == ["feedback A-1 useful", "feedback A-1 not-useful"]
    await slack.interaction(
        block_actions(
            buttons[0], user="UPAT", channel="C0METRO", trigger_id=fake.issue_trigger_id()
        )
    )
    dm = await until(lambda: fake.dm_channel_id("UOLLY"))
    told = await until(lambda: [m for m in fake.messages(dm) if "useful" in texts([m])])
    assert "Metro Police Department" in texts(told)


BRIDGE_POLICY = POLICY.replace(
    'channels = ["slack:C0TIPS"]', 'channels = ["slack:C0TIPS", "console:#tips"]'
)


async def test_one_process_bridges_the_console_and_slack(tmp_path: Path) -> None:
    """A tip typed on the console is carded in Slack and triaged there; the console
    officer gets the receipt and the analyst's question on the console."""
    async with (
        FakeSlackWebAPI() as fake,
        fusionbot_run(tmp_path, fake, BRIDGE_POLICY, "--console") as (slack, process, log),
    ):
        assert process.stdin is not None
        process.stdin.write(b"@olly #tips !tip Van circling the depot | category: survl\n")
        await process.stdin.drain()
        card = await until(lambda: fake.messages("C0REVIEW"))
        assert "T-1 · NEW" in texts(card)
        await until(lambda: "@olly Received T-1" in log.read_text())

        await slack.interaction(
            block_actions(
                "claim T-1", user="UANA", channel="C0REVIEW", trigger_id=fake.issue_trigger_id()
            )
        )
        await slack.command(
            "/fusion",
            "ask T-1 Which depot?",
            user="UANA",
            channel="C0REVIEW",
            trigger_id=fake.issue_trigger_id(),
        )
        await until(lambda: "@olly slack:UANA asks about your tip T-1" in log.read_text())
        # Asked from Slack, answered on the console: the hint is spelled for the officer.
        assert "Answer with: !reply T-1 <your answer>" in log.read_text()
        process.stdin.write(b"@olly @bot !reply T-1 The north depot\n")
        await process.stdin.drain()
        await until(lambda: "The north depot" in texts(fake.messages("C0REVIEW")))
