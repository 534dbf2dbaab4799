"""Prometheus metrics of one bot process (``GET /metrics`` on the HTTP port).

Counters count what this process did; with several replicas, sum them in Prometheus.
The outbox depth is read from the shared database at each scrape, so every replica
reports the same, whole queue.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Our own registry: tests build many bots in one process, and nothing else's metrics
# (the client library's process collectors) belong in the bot's answer.
REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

TIPS_FILED = Counter(
    "fusionbot_tips_filed",
    "Tips filed, by the platform they came from",
    ["platform"],
    registry=REGISTRY,
)
TRIAGE_SECONDS = Histogram(
    "fusionbot_triage_seconds",
    "Time from a tip's filing to an analyst's decision, by decision",
    ["decision"],
    buckets=(60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86_400, 3 * 86_400, 7 * 86_400),
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "fusionbot_deliveries",
    "Outbox delivery attempts by platform and outcome (sent, retried, rate_limited, failed, held)",
    ["platform", "outcome"],
    registry=REGISTRY,
)
OUTBOX_DEPTH = Gauge(
    "fusionbot_outbox_depth",
    "Outbox rows waiting to be sent, by platform",
    ["platform"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "fusionbot_leader",
    "1 while this process leads (scheduler and Matrix sync)",
    registry=REGISTRY,
)


def set_outbox_depth(waiting: dict[str, int]) -> None:
    OUTBOX_DEPTH.clear()
    for platform, count in waiting.items():
        OUTBOX_DEPTH.labels(platform).set(count)


def exposition() -> bytes:
    return generate_latest(REGISTRY)
