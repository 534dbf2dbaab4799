"""On-demand benchmarks (``make bench``): each starts what it needs on 127.0.0.1, runs a
bounded load, prints one table and records its row in ``benchmarks/results/latest.json``.
Never part of ``make test``; see benchmarks/README.md."""
