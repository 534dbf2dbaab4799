"""Fan-out benchmarks' shared parts: a policy with many partner channels, and the
scenario that releases one alert to all of them.

One module per platform (``fanout_slack`` now; ``fanout_matrix`` to come) supplies:
- the partner channel addresses (``slack:C…``, ``matrix:!room:server``),
- a fake or real server that notes when each copy arrives,
- a bare client of that platform posting the same copies with the outbox worker's
  concurrency (:func:`worker_concurrency`) — the baseline,
and builds the policy with :func:`partners_policy`. The release itself is done through
Slack (`/tip`, `/fusion claim`, `/fusion approve … to:all now confirm`) by
:func:`release_alert_via_slack`; a Matrix fan-out can keep Slack as the place the analysts
work, or drive the same commands from the console (`fusionbot run --console`)."""

from __future__ import annotations

import asyncio
import inspect
import time

from benchmarks.slack_common import Slack, TimedSlack, until
from bot.outbox_worker import OutboxWorker

PARTNERS = 1000
SUPERVISOR = "USAM"
OFFICER = "UOFF"


def worker_concurrency() -> int:
    """How many sends the outbox worker has in flight at most (its ``concurrency``)."""
    return int(inspect.signature(OutboxWorker).parameters["concurrency"].default)


def partners_policy(partner_channels: list[str], *, review: str, intake: str) -> str:
    """A policy whose partners each have one channel, all cleared to AMBER for every
    category and region, immediate delivery."""
    partners = "\n".join(
        f"""[[partners]]
id = "p{i:04d}"
name = "Partner {i:04d}"
sector = "local"
max_tlp = "AMBER"
categories = ["*"]
regions = ["*"]
delivery = "immediate"
channels = ["{channel}"]
"""
        for i, channel in enumerate(partner_channels)
    )
    return f"""
[center]
name = "Benchmark Fusion Center"
timezone = "America/New_York"
regions = ["north", "south", "downtown"]

[roles]
officers = ["*"]
analysts = ["slack:UANA"]
supervisors = ["slack:{SUPERVISOR}"]
admins = ["slack:{SUPERVISOR}"]

[[intake]]
channels = ["{intake}"]

[[review]]
name = "general"
channels = ["{review}"]
categories = ["*"]

{partners}"""


async def settle(slack: Slack, fake: TimedSlack, review: str, seconds: float = 30.0) -> float:
    """Wait until the bot answers promptly: right after start (and after being elected
    leader) it declares one scheduler job per partner, which at 1,000 partners holds its
    event loop for seconds. The fan-out is measured after that; the wait is returned."""
    started = time.monotonic()
    prompt = 0
    while prompt < 3 and time.monotonic() - started < seconds:
        _, _, ack = await slack.command(
            "/fusion", "help", user="UANA", channel=review, trigger_id=fake.issue_trigger_id()
        )
        prompt = prompt + 1 if ack < 0.1 else 0
        await asyncio.sleep(0.3)
    return time.monotonic() - started


async def release_alert_via_slack(
    slack: Slack, fake: TimedSlack, *, intake: str, review: str
) -> tuple[float, float]:
    """File T-1, claim it and release it to every partner now. Returns when the approve
    request was sent (time.monotonic()) and how long its ack took."""
    await settle(slack, fake, review)
    status, body, _ = await slack.command(
        "/tip",
        "Drone over the stadium during the game | category: aviation | location: stadium",
        user=OFFICER,
        channel=intake,
        trigger_id=fake.issue_trigger_id(),
    )
    assert (status, body) == (200, ""), (status, body)
    await until(lambda: fake.arrived([review]) >= 1, seconds=30)
    await slack.command(
        "/fusion", "claim T-1", user=SUPERVISOR, channel=review, trigger_id=fake.issue_trigger_id()
    )
    await until(lambda: "CLAIMED" in str(fake.messages(review)), seconds=30)
    started = time.monotonic()
    status, body, ack = await slack.command(
        "/fusion",
        "approve T-1 tlp:green to:all now confirm",
        user=SUPERVISOR,
        channel=review,
        trigger_id=fake.issue_trigger_id(),
    )
    assert (status, body) == (200, ""), (status, body)
    return started, ack
