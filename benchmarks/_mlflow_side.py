"""The MLflow side of the tracking benchmark, run inside MLflow's throwaway virtual environment.

Usage: ``python _mlflow_side.py WORK_DIR WORKLOAD_JSON``; prints one JSON object on stdout.
MLflow uses a SQLite tracking store and a local artifact directory under ``WORK_DIR``.
"""

from __future__ import annotations

import getpass
import json
import shutil
import sqlite3
import sys
import time
import uuid
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


def main(work: Path, workload: Workload) -> dict[str, Any]:
    """Run every measurement and return the figures."""
    import mlflow
    import sqlalchemy

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    artifacts = (work / "mlartifacts").as_uri()
    experiments = {
        name: mlflow.create_experiment(name, artifact_location=f"{artifacts}/{name}")
        for name in ("single", "batch", "create", "search")
    }
    return {
        "tool": "mlflow",
        "store": "sqlite",
        "versions": {
            "mlflow": mlflow.__version__,
            "sqlalchemy": sqlalchemy.__version__,
            "sqlite": sqlite3.sqlite_version,
        },
        "single": single_calls(mlflow, experiments["single"], workload),
        "batch": batches(mlflow, experiments["batch"], workload),
        "create": run_creation(mlflow, experiments["create"], workload),
        "search": search(mlflow, uri, experiments["search"], artifacts, workload),
    }


def single_calls(mlflow: Any, experiment_id: str, workload: Workload) -> dict[str, float]:
    """``log_metric`` one value at a time; every call is written before it returns."""
    count = workload.single_calls
    mlflow.start_run(experiment_id=experiment_id)
    start = time.perf_counter()
    for step in range(count):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    called = time.perf_counter()
    mlflow.end_run()
    flushed = time.perf_counter()
    return {
        "calls": count,
        "call_us": (called - start) / count * 1e6,
        "flushed_s": flushed - start,
        "per_s": count / (flushed - start),
    }


def batches(mlflow: Any, experiment_id: str, workload: Workload) -> dict[str, float]:
    """``log_metrics`` of ``batch_size`` keys per call (MLflow sends each as one ``log_batch``)."""
    payloads = batch_payloads(workload)
    mlflow.start_run(experiment_id=experiment_id)
    start = time.perf_counter()
    for step, payload in enumerate(payloads):
        mlflow.log_metrics(payload, step=step)
    mlflow.end_run()
    elapsed = time.perf_counter() - start
    return {
        "metrics": workload.batch_total,
        "flushed_s": elapsed,
        "per_s": workload.batch_total / elapsed,
    }


def run_creation(mlflow: Any, experiment_id: str, workload: Workload) -> dict[str, float]:
    """Whole runs: start, 5 params, 5 metrics, end."""
    start = time.perf_counter()
    for index in range(workload.runs):
        with mlflow.start_run(experiment_id=experiment_id):
            mlflow.log_params(run_params(index))
            mlflow.log_metrics(run_metrics(index))
    elapsed = time.perf_counter() - start
    return {"runs": workload.runs, "elapsed_s": elapsed, "per_s": workload.runs / elapsed}


def search(
    mlflow: Any, uri: str, experiment_id: str, artifacts: str, workload: Workload
) -> dict[str, Any]:
    """Top ``search_limit`` of ``search_runs`` runs, filtered and ordered by the latest rmse."""
    setup = time.perf_counter()
    bulk_insert_runs(uri, int(experiment_id), artifacts, workload.search_runs)
    setup_s = time.perf_counter() - setup
    found: list[str] = []

    def query() -> None:
        frame = mlflow.search_runs(
            experiment_ids=[experiment_id],
            filter_string=f"metrics.rmse < {SEARCH_WHERE_THRESHOLD}",
            order_by=["metrics.rmse ASC"],
            max_results=workload.search_limit,
        )
        found[:] = frame["tags.mlflow.runName"].tolist()

    figures: dict[str, Any] = repeat_timed(query, repeats=workload.search_repeats)
    figures.update(
        runs=workload.search_runs,
        setup_s=setup_s,
        returned=len(found),
        correct=found == expected_top(workload),
    )
    return figures


def bulk_insert_runs(uri: str, experiment_id: int, artifacts: str, count: int) -> None:
    """The fastest way to fill MLflow's store: rows straight into its own tables, one commit.

    Its public API (``create_run`` + ``log_batch``) takes tens of ms per run here; the rows
    written are the ones that API writes (runs, tags, params, metrics, latest_metrics).
    """
    from mlflow.store.tracking.dbmodels.models import (
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )
    from sqlalchemy import create_engine, insert

    user = getpass.getuser()
    now = int(time.time() * 1000)
    rows: dict[Any, list[dict[str, Any]]] = {
        table: [] for table in (SqlRun, SqlTag, SqlParam, SqlMetric, SqlLatestMetric)
    }
    for index in range(count):
        run = uuid.uuid4().hex
        name = search_run_name(index)
        rows[SqlRun].append(
            {
                "run_uuid": run,
                "name": name,
                "source_type": "LOCAL",
                "source_name": "bench",
                "entry_point_name": "",
                "user_id": user,
                "status": "FINISHED",
                "start_time": now + index,
                "end_time": now + index + 1,
                "source_version": "",
                "lifecycle_stage": "active",
                "artifact_uri": f"{artifacts}/search/{run}/artifacts",
                "experiment_id": experiment_id,
            }
        )
        tags = {"mlflow.runName": name, "mlflow.user": user, "mlflow.source.type": "LOCAL"}
        rows[SqlTag] += [{"key": k, "value": v, "run_uuid": run} for k, v in tags.items()]
        rows[SqlParam] += [
            {"key": k, "value": v, "run_uuid": run} for k, v in run_params(index).items()
        ]
        metrics = run_metrics(index)
        points = [("rmse", step, value) for step, value in rmse_history(metrics.pop("rmse"))]
        points += [(key, 0, value) for key, value in metrics.items()]
        latest: dict[str, dict[str, Any]] = {}
        for key, step, value in points:
            row = {"key": key, "value": value, "timestamp": now + index, "step": step}
            row.update(is_nan=False, run_uuid=run)
            rows[SqlMetric].append(row)
            latest[key] = row
        rows[SqlLatestMetric] += latest.values()
    engine = create_engine(uri)
    with engine.begin() as connection:
        for table, values in rows.items():
            connection.execute(insert(table.__table__), values)
    engine.dispose()


if __name__ == "__main__":
    figures = main(Path(sys.argv[1]).resolve(), Workload.from_json(sys.argv[2]))
    sys.stdout.write(json.dumps(figures) + "\n")
