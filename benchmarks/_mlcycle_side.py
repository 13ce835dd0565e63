"""The mlcycle side of the tracking benchmark, run in the project's own environment.

Usage: ``python _mlcycle_side.py HOME METADATA_URL WORKLOAD_JSON``; prints one JSON object.
Runs in its own process, like the MLflow side, so each store starts from a cold process.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from _workload import (
    SEARCH_WHERE_THRESHOLD,
    Workload,
    batch_payloads,
    expected_top,
    repeat_timed,
    rmse_history,
    run_metrics,
    run_params,
    search_run_name,
)


def main(home: Path, url: str, workload: Workload) -> dict[str, Any]:
    """Run every measurement and return the figures."""
    import sqlalchemy

    import mlcycle
    from mlcycle import Workspace
    from mlcycle.settings import Settings, StoreSettings

    home.mkdir(parents=True, exist_ok=True)
    workspace = Workspace.open(Settings(home=home, store=StoreSettings(metadata_url=url)))
    try:
        return {
            "tool": "mlcycle",
            "store": url.split(":", 1)[0].split("+", 1)[0],
            "versions": {
                "mlcycle": mlcycle.__version__,
                "sqlalchemy": sqlalchemy.__version__,
                "sqlite": sqlite3.sqlite_version,
            },
            "single": single_calls(workspace, workload),
            "batch": batches(workspace, workload),
            "create": run_creation(workspace, workload),
            "search": search(workspace, workload),
        }
    finally:
        workspace.close()


def single_calls(workspace: Any, workload: Workload) -> dict[str, Any]:
    """``log_metric`` one value at a time, timed until everything is written."""
    count = workload.single_calls
    with workspace.start_run(experiment="single") as run:
        start = time.perf_counter()
        for step in range(count):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        called = time.perf_counter()
    workspace.flush()
    flushed = time.perf_counter()
    stored = len(workspace.get_run(run.id).metric_history("loss"))
    return {
        "calls": count,
        "call_us": (called - start) / count * 1e6,
        "flushed_s": flushed - start,
        "per_s": count / (flushed - start),
        "stored": stored,
        "correct": stored == count,
    }


def batches(workspace: Any, workload: Workload) -> dict[str, Any]:
    """``log_metrics`` of ``batch_size`` keys per call, timed until everything is written."""
    payloads = batch_payloads(workload)
    with workspace.start_run(experiment="batch") as run:
        start = time.perf_counter()
        for step, payload in enumerate(payloads):
            run.log_metrics(payload, step=step)
        called = time.perf_counter()
    workspace.flush()
    elapsed = time.perf_counter() - start
    view = workspace.get_run(run.id)
    stored = len(view.metric_history("m0000")) * workload.batch_size
    return {
        "metrics": workload.batch_total,
        "call_us": (called - start) / len(payloads) * 1e6,
        "flushed_s": elapsed,
        "per_s": workload.batch_total / elapsed,
        "correct": stored == workload.batch_total,
    }


def run_creation(workspace: Any, workload: Workload) -> dict[str, float]:
    """Whole runs: start with 5 params, 5 metrics, end; timed until everything is written."""
    start = time.perf_counter()
    for index in range(workload.runs):
        with workspace.start_run(experiment="create", params=run_params(index)) as run:
            run.log_metrics(run_metrics(index))
    workspace.flush()
    elapsed = time.perf_counter() - start
    return {"runs": workload.runs, "elapsed_s": elapsed, "per_s": workload.runs / elapsed}


def search(workspace: Any, workload: Workload) -> dict[str, Any]:
    """Top ``search_limit`` of ``search_runs`` runs, filtered and ordered by the latest rmse."""
    setup = time.perf_counter()
    for index in range(workload.search_runs):
        metrics = run_metrics(index)
        history = rmse_history(metrics.pop("rmse"))
        name = search_run_name(index)
        with workspace.start_run(experiment="search", name=name, params=run_params(index)) as run:
            for step, value in history:
                run.log_metric("rmse", value, step=step)
            run.log_metrics(metrics, step=0)
    workspace.flush()
    setup_s = time.perf_counter() - setup
    found: list[str] = []

    def query() -> None:
        frame = workspace.search_runs(
            "search",
            where=f"metrics.rmse < {SEARCH_WHERE_THRESHOLD}",
            order_by="metrics.rmse",
            limit=workload.search_limit,
        )
        found[:] = frame["name"].tolist()

    figures: dict[str, Any] = repeat_timed(query, repeats=workload.search_repeats)
    figures.update(
        runs=workload.search_runs,
        setup_s=setup_s,
        returned=len(found),
        correct=found == expected_top(workload),
    )
    return figures


if __name__ == "__main__":
    figures = main(Path(sys.argv[1]).resolve(), sys.argv[2], Workload.from_json(sys.argv[3]))
    sys.stdout.write(json.dumps(figures) + "\n")
