"""How steady this machine's speed is: the same Python work, second by second.

The serving benchmark's shadow goal compares latencies within 10 %, so it
needs to know how much the machine itself moves. This runs one unit of pure
Python work (about 4 ms on a fast second here) back to back for
``--seconds``, and prints each second's median time per unit, the fast and
the slow level (the 10th and 90th percentile of those medians), and how
often the speed crossed the middle between them. On the 2-core AMD EPYC VMs
of 2026-12-04 the levels were 4.2 and 7.0 ms, switching every 1 to 10 s,
with no steal time reported by the guest.

    .venv/bin/python benchmarks/machine_speed.py [--seconds 60]

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

UNIT_ITERATIONS = 100_000


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the table, then the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to measure")
    args = parser.parse_args(argv)
    if args.seconds < 2:
        parser.error("--seconds must be at least 2")
    report = measure(args.seconds)
    print("| seconds | fast level | slow level | slow / fast | crossings | per-second medians |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(
        f"| {len(report['per_second_ms'])} | {report['fast_ms']:.2f} ms | "
        f"{report['slow_ms']:.2f} ms | {report['slow_over_fast']:.2f}x | {report['crossings']} | "
        + " ".join(f"{value:.1f}" for value in report["per_second_ms"])
        + " |"
    )
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


def measure(seconds: float) -> dict[str, Any]:
    """Each second's median unit time (ms), the two levels, and the crossings between them."""
    per_second: list[float] = []
    units: list[float] = []
    started = second = time.perf_counter()
    while (now := time.perf_counter()) - started < seconds:
        units.append(_unit())
        if now - second >= 1.0:
            per_second.append(statistics.median(units) * 1000)
            units, second = [], now
    ordered = sorted(per_second)
    fast = ordered[len(ordered) // 10]
    slow = ordered[(len(ordered) * 9) // 10]
    middle = (fast + slow) / 2
    sides = [value > middle for value in per_second]
    return {
        "benchmark": "machine-speed",
        "unit_iterations": UNIT_ITERATIONS,
        "per_second_ms": per_second,
        "fast_ms": fast,
        "slow_ms": slow,
        "slow_over_fast": slow / fast,
        "crossings": sum(a != b for a, b in itertools.pairwise(sides)),
    }


def _unit() -> float:
    """Seconds one unit of integer arithmetic in a Python loop took."""
    begun = time.perf_counter()
    total = 0
    for i in range(UNIT_ITERATIONS):
        total += i * i
    return time.perf_counter() - begun


if __name__ == "__main__":
    sys.exit(main())
