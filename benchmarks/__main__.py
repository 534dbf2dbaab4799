"""``python -m benchmarks`` runs every benchmark; ``python -m benchmarks NAME…`` some.

Each prints its table and records its row in benchmarks/results/latest.json."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from benchmarks.common import Result, console, record, show

# name -> module with run() -> Result. A new benchmark (e.g. fanout_matrix) is one line here.
BENCHMARKS = {
    "slack_intake": "benchmarks.slack_intake",
    "burst": "benchmarks.burst",
    "fanout_slack": "benchmarks.fanout_slack",
    "storage": "benchmarks.storage",
    "matrix_intake": "benchmarks.matrix_intake",
    "fanout_matrix": "benchmarks.fanout_matrix",
    "audit_chain": "benchmarks.audit_chain",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    failed = []
    for name in args.names or list(BENCHMARKS):
        console.rule(name)
        started = time.monotonic()
        result: Result = importlib.import_module(BENCHMARKS[name]).run()
        show(result)
        record(result)
        console.print(f"[dim]{name}: {time.monotonic() - started:.0f} s[/dim]")
        if not result.ok:
            failed.append(name)
    if failed:
        console.print(f"[red]invalid runs (lost, doubled or failed work): {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
