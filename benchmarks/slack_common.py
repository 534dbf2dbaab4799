"""Slack benchmarks' shared parts: the test suite's Slack fake with arrival times, the
real `fusionbot run` process (the tests' helper) and a bare bolt app as a baseline process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import ROOT
from tests.fakes.slack_web_api import DEFAULT_BOT_TOKEN, FakeSlackWebAPI
from tests.matrix_server.synapse import free_port
from tests.test_slack_app import SECRET, Slack
from tests.test_slack_flow import bot_environment, fusionbot_run, until

__all__ = [
    "SECRET",
    "Arrival",
    "Slack",
    "TimedSlack",
    "bare_bolt",
    "bot_environment",
    "fusionbot_run",
    "until",
]

Arrival = tuple[float, str]  # (time.monotonic() when Slack accepted it, its text)


class TimedSlack(FakeSlackWebAPI):
    """The suite's Slack fake, noting when each chat.postMessage was accepted, per
    channel, on this process's monotonic clock (the load generator's clock too)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.arrivals: dict[str, list[Arrival]] = defaultdict(list)
        self.accepted = 0

    def _chat_post_message(self, ctx: Any) -> dict[str, Any]:
        answer = super()._chat_post_message(ctx)
        self.arrivals[str(answer["channel"])].append(
            (time.monotonic(), str(answer["message"].get("text", "")))
        )
        self.accepted += 1
        return answer

    def arrived(self, channels: list[str] | None = None) -> int:
        keys = self.arrivals.keys() if channels is None else channels
        return sum(len(self.arrivals.get(c, [])) for c in keys)

    def last_arrival(self, channels: list[str] | None = None) -> float:
        keys = self.arrivals.keys() if channels is None else channels
        return max((t for c in keys for t, _ in self.arrivals.get(c, [])), default=0.0)


@contextlib.asynccontextmanager
async def bare_bolt(
    tmp_path: Path, fake: FakeSlackWebAPI, *args: str
) -> AsyncIterator[tuple[Slack, asyncio.subprocess.Process]]:
    """benchmarks/bare_bolt.py as its own process, served like the bot (aiohttp, the same
    /slack/events path), its Web API at the fake."""
    port = free_port()
    log = tmp_path / "bare_bolt.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.bare_bolt",
            "--port",
            str(port),
            "--api-url",
            fake.url,
            "--token",
            DEFAULT_BOT_TOKEN,
            "--secret",
            SECRET,
            *args,
            cwd=ROOT,
            stdout=output,
            stderr=output,
        )
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{port}"
            for _ in range(400):
                if process.returncode is not None:
                    raise RuntimeError(log.read_text())
                try:
                    async with session.get(f"{base}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            yield Slack(session, f"{base}/slack/events"), process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
