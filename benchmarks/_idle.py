"""A machine's idle penalty: the same Python work, back to back and right after the CPU idled.

On the 2-core VMs these benchmarks run on, a server's CPU per single-row
request depends on how often it idles: paced at 1,000 requests/s one worker
spent 344 µs of user time a request, at 2,000/s 266 µs, at 4,000/s 182 µs, at
6,000/s 146 µs, and 126 µs at full load (2026-12-04), with the same code and
every paced request a batch of one. The work did not change; the processor
ran it slower after each idle wait (cold caches and predictors, a descheduled
virtual CPU). That is why "half the maximum rate" leaves a worker 70 to 90 %
busy instead of about half, and the shadow phase's latency ratios then read
a queue. This probe measures the property without a server: it parses a v2
request body with orjson and reads its tensors, timing only that work with
the thread's CPU clock, with no wait between runs and after waits of 200 µs
and 1 ms in ``select`` (as an event loop waits in ``epoll``).
"""

from __future__ import annotations

import select
import socket
import statistics
import time
from typing import Any

import orjson

GAPS_S = (0.0, 0.0002, 0.001)
BODY = (
    b'{"inputs": ['
    + b",".join(
        b'{"name": "c%d", "shape": [1], "datatype": "FP64", "data": [%d.5]}' % (i, i)
        for i in range(12)
    )
    + b"]}"
)


def idle_penalty(*, iterations: int = 2000, rounds: int = 3) -> dict[str, Any]:
    """The work's CPU µs after each gap (median over ``rounds``), and its ratio to no gap."""
    taken: dict[float, list[float]] = {gap: [] for gap in GAPS_S}
    for _ in range(rounds):
        for gap in GAPS_S:
            taken[gap].append(_work_us(gap, iterations))
    work_us = {_label(gap): statistics.median(values) for gap, values in taken.items()}
    alone = work_us[_label(0.0)]
    return {
        "work_us": work_us,
        "ratio": {_label(gap): work_us[_label(gap)] / alone for gap in GAPS_S if gap},
    }


def _work_us(gap_s: float, iterations: int) -> float:
    """The mean CPU µs of one unit of work, each after waiting ``gap_s`` with nothing to read."""
    quiet, other = socket.socketpair()
    spent = 0.0
    try:
        for _ in range(iterations):
            if gap_s:
                select.select([quiet], [], [], gap_s)
            started = time.thread_time()
            _work()
            spent += time.thread_time() - started
    finally:
        quiet.close()
        other.close()
    return spent / iterations * 1e6


def _work() -> float:
    total = 0.0
    for _ in range(3):
        for tensor in orjson.loads(BODY)["inputs"]:
            total += tensor["data"][0] * len(tensor["name"])
    return total


def _label(gap_s: float) -> str:
    return "none" if not gap_s else f"{gap_s * 1e6:.0f} µs"
