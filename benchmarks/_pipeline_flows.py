"""The pipelines the pipeline benchmark runs, copied into its fresh project as ``bench_flows.py``.

They live in a file so Dask workers load them by path, as they would a user's. Each step
body is timed with ``time.perf_counter`` into ``BODY_S`` (in the process that runs it), so
the benchmark can subtract the steps' own time from the wall time. ``spin`` is also what
the raw Dask side maps, so both sides run the same function.
"""

from __future__ import annotations

import time

from mlcycle import pipeline, step

BODY_S: list[float] = []
"""The duration of every step body run in this process, in seconds."""


def nothing(previous: int, salt: int) -> int:
    """The no-op: what a step does when it does nothing, timed."""
    started = time.perf_counter()
    value = previous + 1  # each step a new input; `salt` makes each run a new key
    BODY_S.append(time.perf_counter() - started)
    return value


def spin(index: int, salt: int, cpu_s: float) -> int:
    """Burn ``cpu_s`` seconds of this process's CPU time (not wall time: the machine is shared)."""
    started = time.process_time()
    total = index + salt
    while time.process_time() - started < cpu_s:
        for number in range(1_000):
            total = (total + number * number) % 1_000_003
    return total


@step
def noop(previous: int, salt: int) -> int:
    """A step that does nothing but pass a number on."""
    return nothing(previous, salt)


@step
def burn(index: int, salt: int, cpu_s: float) -> int:
    """A step of ``cpu_s`` seconds of CPU."""
    return spin(index, salt, cpu_s)


@pipeline
def chain(steps: int = 50, salt: int = 0) -> None:
    """``steps`` no-op steps, each taking the previous one's output."""
    value = noop(0, salt)
    for _ in range(steps - 1):
        value = noop(value, salt)


@pipeline
def fan(steps: int = 200, salt: int = 0, cpu_s: float = 0.05) -> None:
    """``steps`` independent steps of ``cpu_s`` seconds of CPU each."""
    for index in range(steps):
        burn(index, salt, cpu_s)
