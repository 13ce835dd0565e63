"""Pool the shadow goals of several serving benchmark runs into one figure each, with its interval.

One run of the shadow phase gives each shadow goal's ratio with a 95 %
interval (a bootstrap over its runs); with 64 pairs a phase, the p99
ratio's spans about ±0.04 on 2 vCPUs shared with ``wrk``, close to the
goal's 5 %. Several runs pool as a meta-analysis pools studies: each
ratio's logarithm weighted by the inverse of its variance, read off its
interval as if normal. The pooled figure's interval is narrower than any
run's; where it lies wholly on one side of the goal, the runs together
decide it.

    .venv/bin/python benchmarks/shadow_pool.py RUN.txt [RUN.txt ...]

Each file is what ``make bench-serving`` or ``make bench-serving-shadow``
printed (redirect it to a file); its last JSON line is read. Prints a table
and, last, a JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _serving_report import SHADOW_MEDIAN_GOAL, SHADOW_P99_GOAL, table

GOALS = {"shadow_median": SHADOW_MEDIAN_GOAL, "shadow_p99": SHADOW_P99_GOAL}
Z95 = 1.959964  # the normal quantile of a two-sided 95 % interval


class BadRun(ValueError):
    """A file that holds no run's shadow goals."""


def main(argv: Sequence[str] | None = None) -> int:
    """Read each run, pool each shadow goal, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("runs", nargs="+", type=Path, help="a serving benchmark's output")
    args = parser.parse_args(argv)
    try:
        runs = {str(path): run_goals(path) for path in args.runs}
    except BadRun as error:
        print(f"shadow_pool: {error}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"benchmark": "serving-shadow-pool", "runs": runs, "pooled": {}}
    rows = []
    for key, goal in GOALS.items():
        figures = [run[key] for run in runs.values()]
        value, low, high = pooled(figures)
        verdict = "PASS" if value <= goal else "MISS"
        decided = high <= goal or low > goal  # the whole interval on one side of the goal
        report["pooled"][key] = {
            "value": value,
            "interval": [low, high],
            "goal": goal,
            "verdict": verdict,
            "decided": decided,
        }
        each = ", ".join(
            f"{f['value']:.3f}x ({f['interval'][0]:.2f} to {f['interval'][1]:.2f})" for f in figures
        )
        shown = f"{verdict}, decided" if decided else f"{verdict}, the interval spans the goal"
        rows.append([key, each, f"{value:.3f}x ({low:.3f} to {high:.3f})", f"≤ {goal:.2f}x", shown])
    table(["goal", "each run (95 %)", "pooled (95 %)", "goal", ""], rows)
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


def run_goals(path: Path) -> dict[str, dict[str, Any]]:
    """The shadow goals' figures and intervals in the last JSON line of ``path``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise BadRun(f"{path} cannot be read ({error}); give a benchmark's output file") from error
    found = None
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                found = json.loads(line)
            except json.JSONDecodeError as error:
                raise BadRun(
                    f"{path}: its last JSON line is not JSON ({error}); was the run cut short?"
                ) from error
            break
    if not isinstance(found, dict):
        raise BadRun(
            f"{path} has no JSON line; give what `make bench-serving` or "
            "`make bench-serving-shadow` printed, to its end"
        )
    goals = found.get("goals") or {}
    figures = {}
    for key in GOALS:
        goal = goals.get(key) or {}
        value, interval = goal.get("value"), goal.get("interval")
        if not _positive(value) or not (
            isinstance(interval, list) and len(interval) == 2 and all(map(_positive, interval))
        ):
            raise BadRun(
                f"{path}: goal {key!r} has no figure with a 95 % interval; the run's shadow "
                "phase failed or predates intervals (2026-12-04)"
            )
        figures[key] = {"value": float(value), "interval": [float(x) for x in interval]}
    return figures


def pooled(figures: Sequence[dict[str, Any]]) -> tuple[float, float, float]:
    """The inverse-variance weighted geometric mean of the ratios, and its 95 % interval."""
    weights, logs = [], []
    for figure in figures:
        low, high = figure["interval"]
        spread = max(math.log(high) - math.log(low), 1e-9) / (2 * Z95)
        weights.append(1 / spread**2)
        logs.append(math.log(figure["value"]))
    mean = sum(w * x for w, x in zip(weights, logs, strict=True)) / sum(weights)
    error = math.sqrt(1 / sum(weights))
    return math.exp(mean), math.exp(mean - Z95 * error), math.exp(mean + Z95 * error)


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


if __name__ == "__main__":
    sys.exit(main())
