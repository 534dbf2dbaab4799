"""burst: 10 /tip requests a second for 20 s into one review channel, against the real
`fusionbot run` process, with the Slack fake enforcing its per-channel pace (1 message/s,
burst 3, 429 + Retry-After beyond it).

Measures the time from the first /tip until the last review card arrives, and cards lost
or doubled (must be 0). Baseline, the floor: the pace itself, (N − burst) cards ÷ 1/s
after the first request; no sender can beat it without breaking Slack's limit."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.common import Comparison, Result, summary_ms
from benchmarks.slack_common import Slack, TimedSlack, fusionbot_run, until
from tests.test_slack_flow import POLICY

NAME = "burst"
GOAL = 1.1
RATE = 10  # tips per second
SECONDS = int(os.environ.get("FUSIONBOT_BENCH_BURST_SECONDS", "20"))
PACE = 1.0  # messages per second per channel, as Slack documents
FAKE_BURST = 3
REVIEW = "C0REVIEW"
INTAKE = "C0TIPS"
CARD = re.compile(r"\bT-(\d+) · NEW\b")


async def file_tip(slack: Slack, fake: TimedSlack, n: int) -> tuple[int, str, float]:
    return await slack.command(
        "/tip",
        f"Burst tip {n}: person photographing the substation fence | location: gate {n}",
        user=f"UOFF{n:03d}",
        channel=INTAKE,
        trigger_id=fake.issue_trigger_id(),
    )


def card_counts(fake: TimedSlack) -> Counter[int]:
    counts: Counter[int] = Counter()
    for _, text in fake.arrivals.get(REVIEW, []):
        counts.update({int(n) for n in CARD.findall(text)})
    return counts


async def bench() -> Result:
    tips = RATE * SECONDS
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fusionbot-bench-") as tmp:
        async with (
            TimedSlack(per_channel_per_second=PACE, burst=FAKE_BURST) as fake,
            fusionbot_run(Path(tmp), fake, POLICY) as (slack, _, log),
        ):
            started = time.monotonic()
            requests = []
            for n in range(1, tips + 1):
                # On schedule, not after the previous answer (an open loop, as Slack sends).
                await asyncio.sleep(max(0.0, started + (n - 1) / RATE - time.monotonic()))
                requests.append(asyncio.create_task(file_tip(slack, fake, n)))
            answers = await asyncio.gather(*requests)
            # When the slow acks were sent (s after the first): a pattern points at a cause.
            slow = [round(i / RATE, 1) for i, a in enumerate(answers) if a[2] >= 1.0]
            bad = [a for a in answers if a[0] != 200 or a[1] != "" or a[2] >= 3.0]
            if bad:
                problems.append(f"{len(bad)} requests not acked within 3 s")
            budget = tips / PACE * 1.5 + 30
            try:
                await until(lambda: len(card_counts(fake)) >= tips, seconds=budget)
            except AssertionError:
                problems.append(f"only {len(card_counts(fake))} of {tips} cards within {budget} s")
            last = fake.last_arrival([REVIEW])
            await asyncio.sleep(2.0)  # a late duplicate would show up by now
            counts = card_counts(fake)
            refused = len(fake.calls_to("chat.postMessage")) - fake.accepted
            # Receipts are paced per channel too; let them finish before stopping the bot.
            await until(lambda: len(fake.ephemerals(INTAKE)) >= tips, seconds=budget)
            receipts_done = time.monotonic() - started
            log_tail = log.read_text()[-3000:]
    lost = sorted(set(range(1, tips + 1)) - set(counts))
    doubled = sorted(n for n, c in counts.items() if c > 1)
    if lost or doubled:
        problems.append(f"lost {lost[:10]} doubled {doubled[:10]}")
    if problems and os.environ.get("FUSIONBOT_BENCH_VERBOSE"):
        print(log_tail)
    elapsed = last - started
    # The fake lets FAKE_BURST cards through at once, then one per 1/PACE s.
    floor = max(0, tips - FAKE_BURST) / PACE
    figures = {
        "tips": tips,
        "rate_per_s": RATE,
        "last_card_s": round(elapsed, 2),
        "cards_lost": len(lost),
        "cards_doubled": len(doubled),
        "posts_refused_429": refused,
        "ack": summary_ms(a[2] for a in answers),
        "all_receipts_s": round(receipts_done, 2),
        "acks_over_1s_sent_at_s": slow,
    }
    baseline = {"floor_s": floor, "pace_per_channel_per_s": PACE, "fake_burst": FAKE_BURST}
    return Result(
        name=NAME,
        goal=GOAL,
        comparisons=[
            Comparison("last card arrived", elapsed, floor, "s", counts=True, note="floor: pace"),
            Comparison("cards lost", len(lost), 0),
            Comparison("cards doubled", len(doubled), 0),
            Comparison("chat.postMessage answered 429", refused, None),
            Comparison("ack p95", figures["ack"]["p95_ms"], None, "ms"),
            Comparison("all receipts arrived", receipts_done, None, "s"),
        ],
        figures=figures,
        baseline=baseline,
        notes=[f"{tips} tips at {RATE}/s into one review channel", *problems],
        ok=not problems,
    )


def run() -> Result:
    return asyncio.run(bench())
