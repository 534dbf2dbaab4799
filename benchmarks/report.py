"""``python -m benchmarks.report``: results/latest.json as Markdown (for the README)."""

from __future__ import annotations

import json
from typing import Any

from benchmarks.common import RESULTS


def _value(value: Any, unit: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        value = round(value, 2)
    return f"{value:g} {unit}".strip() if isinstance(value, int | float) else str(value)


def main() -> None:
    data = json.loads(RESULTS.read_text())
    m = data["machine"]
    print(
        f"Machine: {m['cpu_count']} × {m['cpu_model']}, {m['memory_gb']} GB RAM, "
        f"Python {m['python']}, {m['os']}\n"
    )
    print("| benchmark | ratio | goal | met |")
    print("|---|---:|---:|---|")
    for b in data["benchmarks"]:
        met = "yes" if b["met"] else ("INVALID RUN" if not b["valid"] else "no")
        ratio = "—" if b["ratio"] is None else f"{b['ratio']:.2f}"
        print(f"| {b['name']} | {ratio} | {b['goal']} | {met} |")
    for b in data["benchmarks"]:
        print(f"\n#### {b['name']} ({b['ran_at']})\n")
        print("| measure | ours | baseline | ratio |")
        print("|---|---:|---:|---:|")
        for row in b.get("measures", []):
            ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}"
            if row["counts"] and ratio:
                ratio = f"**{ratio}**"
            print(
                f"| {row['measure']} | {_value(row['ours'], row['unit'])} | "
                f"{_value(row['baseline'], row['unit'])} | {ratio} |"
            )
        for note in b.get("notes", []):
            print(f"\n{note}")


if __name__ == "__main__":
    main()
