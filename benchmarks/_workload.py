"""The workload both tracking benchmark sides run, so mlcycle and MLflow get the same data.

Standard library only: the MLflow side imports it inside MLflow's own virtual environment.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

SEARCH_WHERE_THRESHOLD = 50.0
RMSE_HISTORY = 10  # steps of rmse per search run: "latest value" must be what is compared


@dataclass(frozen=True)
class Workload:
    """Sizes of one benchmark side; passed to the side scripts as JSON."""

    single_calls: int
    batch_total: int
    batch_size: int
    runs: int
    search_runs: int
    search_limit: int
    search_repeats: int

    def to_json(self) -> str:
        """The workload as a command-line argument."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Workload:
        """The workload a side script was given."""
        return cls(**json.loads(text))


def run_params(index: int) -> dict[str, str]:
    """The 5 params of a created run."""
    return {
        "model": ("gbm", "linear", "mean")[index % 3],
        "learning_rate": str(0.01 * (1 + index % 10)),
        "max_depth": str(3 + index % 5),
        "n_estimators": str(100 + index % 7 * 50),
        "seed": str(index),
    }


def run_metrics(index: int) -> dict[str, float]:
    """The 5 final metrics of a created run; rmse is spread over [0, 100)."""
    rng = random.Random(index)
    rmse = rng.uniform(0.0, 100.0)
    return {
        "rmse": rmse,
        "mae": rmse * 0.8,
        "r2": 1.0 - rmse / 100.0,
        "mape": rng.uniform(0.0, 1.0),
        "train_seconds": rng.uniform(1.0, 60.0),
    }


def rmse_history(final: float) -> list[tuple[int, float]]:
    """(step, value) pairs of a run's rmse curve, falling to ``final`` at the last step."""
    last = RMSE_HISTORY - 1
    return [(step, final * (1.0 + 0.1 * (last - step))) for step in range(RMSE_HISTORY)]


def search_run_name(index: int) -> str:
    """The name of search run ``index``; the results of both tools are compared by name."""
    return f"run-{index:05d}"


def expected_top(workload: Workload) -> list[str]:
    """The names the search must return, in order: latest rmse below the threshold, ascending."""
    finals = [(run_metrics(i)["rmse"], search_run_name(i)) for i in range(workload.search_runs)]
    matching = sorted(pair for pair in finals if pair[0] < SEARCH_WHERE_THRESHOLD)
    return [name for _rmse, name in matching[: workload.search_limit]]


def batch_payloads(workload: Workload) -> list[dict[str, float]]:
    """The ``log_metrics`` calls of the batch test: ``batch_size`` keys per call, one step each."""
    calls = workload.batch_total // workload.batch_size
    return [
        {
            f"m{key:04d}": float(step * workload.batch_size + key)
            for key in range(workload.batch_size)
        }
        for step in range(calls)
    ]


def timed(action: Callable[[], object]) -> float:
    """Seconds ``action`` took."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def repeat_timed(action: Callable[[], object], *, repeats: int) -> dict[str, float]:
    """Median and best of ``repeats`` timings of ``action``."""
    times = [timed(action) for _ in range(repeats)]
    return {"median_s": statistics.median(times), "best_s": min(times)}
