"""Prometheus metrics of the server, correct across workers.

Each app has its own registry, so tests can run several apps in one
process. With several workers, the command line sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start (the Prometheus client
reads it when imported) and passes the same folder here: every worker then
writes its values to files there, and ``/metrics`` in any worker adds up
all of them (the Prometheus client's multiprocess mode).
"""

from __future__ import annotations

import asyncio
import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    Summary,
    generate_latest,
)

__all__ = [
    "CONTENT_TYPE",
    "Answers",
    "LaneMetrics",
    "Metrics",
    "Observed",
    "add_observed",
    "bucket_bounds",
    "observe_many",
    "tally",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LANE = ("deployment", "variant", "model", "version")
_FEW = 64
"""Up to this many values, ``observe_many`` adds them up in Python: NumPy's calls cost more."""
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class Answers:
    """A lane's answered requests (their count, each one's latency), written once a loop round.

    Counting a request and observing its latency are three updates of the
    Prometheus client (the counter, a bucket and the sum), each taking a lock
    and, in multiprocess mode, writing a memory-mapped file (0.7 to 1.5 µs
    there). The requests a micro-batch answers finish in the same round of
    the event loop, so their updates are added up in Python and written by one
    callback in the next round: a few updates per round instead of three per
    request. ``/metrics`` shows the same values, one round later.
    """

    __slots__ = ("_latencies", "_latency", "_requests")

    def __init__(self, requests: Any, latency: Any) -> None:  # Any: untyped children
        self._requests = requests
        self._latency = latency
        self._latencies: list[float] = []

    def answered(self, seconds: float) -> None:
        """Count a request answered (200) after ``seconds``; call on the loop."""
        if not self._latencies:
            asyncio.get_running_loop().call_soon(self.write)
        self._latencies.append(seconds)

    def write(self) -> None:
        """Write what was counted since the last call."""
        latencies, self._latencies = self._latencies, []
        if latencies:
            self._requests.inc(len(latencies))
            _observe_few(self._latency, latencies)


@dataclass(frozen=True)
class LaneMetrics:
    """The metric children of one lane, looked up once rather than on every request."""

    answers: Answers
    """Requests answered and their latencies, written once a loop round."""
    batch_rows: Any
    values: Any
    shadow_lag: Any = None
    """A shadow lane's lag histogram; ``None`` for a lane that answers."""


class Metrics:
    """The server's counters, histograms and summaries, in one registry."""

    def __init__(self, *, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mlcycle_serve_requests",
            "Prediction requests answered, by lane and HTTP status.",
            [*_LANE, "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "mlcycle_serve_errors",
            "Requests answered with an error status (4xx, 5xx), by lane and status.",
            [*_LANE, "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mlcycle_serve_request_seconds",
            "Time from a prediction request's arrival to its answer.",
            _LANE,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "mlcycle_serve_batch_rows",
            "Rows in each predict call (micro-batches merge concurrent requests).",
            _LANE,
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.values = Summary(
            "mlcycle_serve_prediction_value",
            "Predicted values (numeric single outputs): count and sum give the mean.",
            _LANE,
            registry=self.registry,
        )
        self.shed = Counter(
            "mlcycle_serve_shed",
            "Work refused to protect the server: 'overload' requests (503) and "
            "'shadow' copies dropped.",
            ["deployment", "reason"],
            registry=self.registry,
        )
        self.shadow_lag = Histogram(
            "mlcycle_serve_shadow_lag_seconds",
            "Time from a request's arrival to its shadow copy's prediction (a shadow predicts "
            "in a process of its own what the prediction log's writer hands it, 5 times a second).",
            _LANE,
            buckets=(*_LATENCY_BUCKETS, 10.0, 30.0),
            registry=self.registry,
        )
        self.loads = Counter(
            "mlcycle_serve_model_loads",
            "Model versions loaded by the workers (a hot change loads the new one).",
            _LANE,
            registry=self.registry,
        )

    def lane(
        self, deployment: str, variant: str, model: str, version: int, *, shadow: bool = False
    ) -> LaneMetrics:
        """The children of one lane's label values."""
        labels = (deployment, variant, model, str(version))
        return LaneMetrics(
            answers=Answers(self.requests.labels(*labels, "200"), self.latency.labels(*labels)),
            batch_rows=self.batch_rows.labels(*labels),
            values=self.values.labels(*labels),
            shadow_lag=self.shadow_lag.labels(*labels) if shadow else None,
        )

    def render(self) -> bytes:
        """The metrics in the Prometheus text format, summed over workers in multiprocess mode."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess  # noqa: PLC0415  (only with several workers)

        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]  # untyped upstream
            combined, path=str(self.multiprocess_dir)
        )
        return generate_latest(combined)


@dataclass(frozen=True, slots=True)
class Observed:
    """What observing many values adds to a histogram or summary: their count and sum, and
    for a histogram each bucket's count (``(slot, count)`` for the buckets that got any)."""

    count: int
    total: float
    buckets: tuple[tuple[int, int], ...] = ()


def bucket_bounds(child: Any) -> tuple[float, ...] | None:  # Any: a histogram or summary child
    """A histogram child's upper bounds (``+Inf`` last), for ``tally``; ``None`` for a summary."""
    bounds = getattr(child, "_upper_bounds", None)
    return None if bounds is None else tuple(bounds)


def tally(values: np.ndarray, bounds: Sequence[float] | None = None) -> Observed:
    """What observing each of ``values`` would add, with NumPy: for a histogram of ``bounds``
    (``bucket_bounds``), or for a summary (``None``). Runs anywhere: a shadow's process adds
    up its own copies' lags and values, and its worker only adds the result."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, as one by one
        total = float(values.sum())
    if bounds is None:
        return Observed(len(values), total)
    slots = np.searchsorted(bounds, values, side="left")
    counts = np.bincount(slots, minlength=len(bounds))[: len(bounds)]  # NaN fits no bucket
    buckets = tuple((slot, int(counts[slot])) for slot in np.flatnonzero(counts).tolist())
    return Observed(len(values), total, buckets)


def add_observed(child: Any, observed: Observed) -> None:  # Any: a histogram or summary child
    """Add what ``tally`` added up: the same counts and sums as one ``observe`` per value."""
    if not observed.count:
        return
    if hasattr(child, "_upper_bounds"):
        for slot, count in observed.buckets:
            child._buckets[slot].inc(count)
    else:
        child._count.inc(observed.count)
    child._sum.inc(observed.total)


def observe_many(child: Any, values: np.ndarray) -> None:  # Any: a histogram or summary child
    """Observe every value of ``values`` at once: the same counts and sums as one call each.

    The Prometheus client observes one value per call, two locked updates
    each; a batch of 64 shadow copies took about 130 such calls, under the
    GIL the serving loop needs. This adds each bucket's count and the sum once,
    through the value objects every histogram and summary child keeps
    (``_buckets``, ``_count``, ``_sum``, and ``_upper_bounds``, the same in
    multiprocess mode). A test checks the exposition against one ``observe``
    per value, so a client release that renames them fails there, not here.
    """
    if len(values) <= _FEW:
        _observe_few(child, values.tolist())
        return
    add_observed(child, tally(values, bucket_bounds(child)))


def _observe_few(child: Any, values: list[float]) -> None:  # Any: a histogram or summary child
    """``observe_many`` of a few values: a single-row batch's NumPy calls took 6 to 16 µs."""
    if hasattr(child, "_upper_bounds"):
        bounds = child._upper_bounds
        counts: dict[int, int] = {}
        for value in values:
            if not math.isnan(value):  # NaN fits no bucket
                slot = bisect.bisect_left(bounds, value)
                counts[slot] = counts.get(slot, 0) + 1
        for slot, count in counts.items():
            child._buckets[slot].inc(count)
    else:
        child._count.inc(len(values))
    child._sum.inc(sum(values))  # inf - inf is NaN, as one by one, and without a warning
