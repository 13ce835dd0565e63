"""The Prefect side of the pipeline benchmark, run in ``benchmarks/.work/prefect-venv``.

Usage: ``python _prefect_side.py STEPS,STEPS... REPEATS``; prints one JSON object. The
workload is the mlcycle side's no-op chain: a flow of STEPS tasks, each taking the previous
one's output, with the same timed body. Prefect runs with its defaults and no server: the
caller sets ``PREFECT_HOME`` to a temporary folder and leaves ``PREFECT_API_URL`` unset, so
Prefect serves its API from a temporary local process on a SQLite file there (the caller
allows it 600 s to start, not 20: the machine may be loaded). The first
flow run (which starts that server) is a warm-up, not timed.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from importlib import metadata
from typing import Any

from prefect import flow, task

BODY_S: list[float] = []


def nothing(previous: int, salt: int) -> int:
    """The no-op of ``_pipeline_flows.nothing``, timed the same way."""
    started = time.perf_counter()
    value = previous + 1  # each step a new input; `salt` makes each run a new key
    BODY_S.append(time.perf_counter() - started)
    return value


@task
def noop(previous: int, salt: int) -> int:
    """A task that does nothing but pass a number on."""
    return nothing(previous, salt)


@flow
def chain(steps: int = 50, salt: int = 0) -> int:
    """``steps`` no-op tasks, each taking the previous one's output."""
    value = noop(0, salt)
    for _ in range(steps - 1):
        value = noop(value, salt)
    return value


def main(sizes: list[int], repeats: int) -> dict[str, Any]:
    """Run each chain ``repeats`` times after a warm-up; the figures."""
    started = time.perf_counter()
    chain(steps=2, salt=-1)
    results: dict[str, Any] = {
        "tool": "prefect",
        "versions": {name: metadata.version(name) for name in ("prefect", "pydantic")},
        "warm_up_s": time.perf_counter() - started,
        "python": sys.version.split()[0],
        "chains": {},
    }
    salt = 0
    for steps in sizes:
        walls, bodies = [], []
        for _ in range(repeats):
            salt += 1
            BODY_S.clear()
            start = time.perf_counter()
            chain(steps=steps, salt=salt)
            walls.append(time.perf_counter() - start)
            bodies.append(sum(BODY_S))
            if len(BODY_S) != steps:
                raise RuntimeError(f"{len(BODY_S)} task bodies ran, not {steps}")
        overheads = [(w - b) / steps for w, b in zip(walls, bodies, strict=True)]
        results["chains"][str(steps)] = {
            "median_s": statistics.median(walls),
            "best_s": min(walls),
            "times_s": walls,
            "body_s": bodies,
            "overhead_per_step_s": statistics.median(overheads),
        }
    return results


if __name__ == "__main__":
    figures = main([int(n) for n in sys.argv[1].split(",")], int(sys.argv[2]))
    sys.stdout.write(json.dumps(figures) + "\n")
