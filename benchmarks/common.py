"""What every benchmark shares: the machine it ran on, the results file, the table, a
few statistics and a closed-loop load driver. A ratio is always ours ÷ a baseline
measured in the same run."""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"

console = Console()


@dataclass
class Comparison:
    """One measure shown in the table: ours, the baseline's, and whether it counts
    towards the benchmark's ratio."""

    measure: str
    ours: float | None
    baseline: float | None
    unit: str = ""
    counts: bool = False
    note: str = ""
    # A rate (requests/s): the ratio is then baseline ÷ ours, so lower is still better.
    higher_is_better: bool = False
    # This measure's own goal, when it differs from the benchmark's (a fan-out is held to
    # 1.5× of a bare client and 1.1× of the platform's floor).
    goal: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.baseline is None or not self.ours or not self.baseline:
            return None
        if self.higher_is_better:
            return self.baseline / self.ours
        return self.ours / self.baseline


@dataclass
class Result:
    name: str
    goal: float
    comparisons: list[Comparison]
    figures: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ok: bool = True  # False: something was lost, doubled or failed; the run is not valid

    def goal_of(self, comparison: Comparison) -> float:
        return self.goal if comparison.goal is None else comparison.goal

    @property
    def binding(self) -> Comparison | None:
        """The counting measure furthest from its goal (or closest to missing it): every
        counting measure must meet its goal, so this one decides."""
        counting = [c for c in self.comparisons if c.counts and c.ratio is not None]
        return max(counting, key=lambda c: (c.ratio or 0) / self.goal_of(c), default=None)

    @property
    def ratio(self) -> float | None:
        binding = self.binding
        return None if binding is None else binding.ratio

    @property
    def binding_goal(self) -> float:
        binding = self.binding
        return self.goal if binding is None else self.goal_of(binding)

    def row(self) -> dict[str, Any]:
        ratio = self.ratio
        goal = self.binding_goal
        return {
            "name": self.name,
            "ran_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "figures": self.figures,
            "baseline": self.baseline,
            "ratio": None if ratio is None else round(ratio, 3),
            "goal": goal,
            "met": ratio is not None and ratio <= goal and self.ok,
            "valid": self.ok,
            "ratio_of": [c.measure for c in self.comparisons if c.counts],
            "measures": [
                {
                    "measure": c.measure,
                    "ours": c.ours,
                    "baseline": c.baseline,
                    "unit": c.unit,
                    "ratio": None if c.ratio is None else round(c.ratio, 3),
                    "counts": c.counts,
                    "goal": self.goal_of(c) if c.counts else None,
                }
                for c in self.comparisons
            ],
            "notes": self.notes,
        }


def machine() -> dict[str, Any]:
    model = ""
    with_cpuinfo = Path("/proc/cpuinfo")
    if with_cpuinfo.exists():
        for line in with_cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gb = None
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model or platform.processor() or platform.machine(),
        "memory_gb": memory_gb,
        "python": sys.version.split()[0],
        "os": platform.platform(),
    }


def record(result: Result) -> None:
    """Add or replace this benchmark's row in results/latest.json."""
    data: dict[str, Any] = {"machine": {}, "benchmarks": []}
    if RESULTS.exists():
        try:
            data = json.loads(RESULTS.read_text())
        except json.JSONDecodeError:
            pass
    rows = [b for b in data.get("benchmarks", []) if b.get("name") != result.name]
    rows.append(result.row())
    rows.sort(key=lambda b: str(b.get("name")))
    data = {"machine": machine(), "benchmarks": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def show(result: Result) -> None:
    table = Table(title=f"{result.name} (goal: ratio ≤ {result.goal})", title_justify="left")
    table.add_column("measure")
    table.add_column("ours", justify="right")
    table.add_column("baseline", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("note")
    for c in result.comparisons:
        ratio = c.ratio
        shown = "" if ratio is None else f"{ratio:.2f}"
        if c.counts and ratio is not None:
            colour = "green" if ratio <= result.goal_of(c) else "red"
            shown = f"[{colour}]{shown}[/{colour}]"
        note = c.note
        if c.counts and c.goal is not None:
            note = f"goal {c.goal}" + (f"; {note}" if note else "")
        table.add_row(c.measure, _fmt(c.ours, c.unit), _fmt(c.baseline, c.unit), shown, note)
    ratio = result.ratio
    verdict = "no ratio" if ratio is None else f"ratio {ratio:.2f} (goal {result.binding_goal})"
    if not result.ok:
        verdict += " — INVALID RUN"
    table.caption = verdict + "".join(f"\n{n}" for n in result.notes)
    table.caption_justify = "left"
    console.print(table)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "/s":
        return f"{value:.1f}/s"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    if unit == "":
        return f"{value:g}"
    return f"{value:g} {unit}"


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(values: Iterable[float]) -> dict[str, float]:
    """p50 / p95 / p99 / max of durations given in seconds, in milliseconds."""
    sample = list(values)
    if not sample:
        return {}
    return {
        "p50_ms": round(percentile(sample, 50) * 1000, 2),
        "p95_ms": round(percentile(sample, 95) * 1000, 2),
        "p99_ms": round(percentile(sample, 99) * 1000, 2),
        "max_ms": round(max(sample) * 1000, 2),
        "mean_ms": round(statistics.fmean(sample) * 1000, 2),
        "n": len(sample),
    }


def own_peak_rss_mib() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib(pid: int) -> dict[str, float]:
    """Current and peak resident set size of a running process, from /proc."""
    out: dict[str, float] = {}
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        for line in status.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out["rss_mib" if key == "VmRSS" else "peak_rss_mib"] = round(
                    int(value.split()[0]) / 1024, 1
                )
    return out


async def closed_loop(
    requests: int, concurrency: int, send: Callable[[int], Awaitable[float]]
) -> tuple[list[float], float]:
    """`concurrency` workers each send the next request as soon as their last one was
    answered, until `requests` were sent. Returns each request's latency and the wall time."""
    numbers = iter(range(requests))
    latencies: list[float] = []

    async def worker() -> None:
        for n in numbers:
            latencies.append(await send(n))

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.monotonic() - started
