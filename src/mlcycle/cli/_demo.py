"""``mlcycle demo``: train three models on the bundled Bike Sharing data and track them.

The task: predict ``cnt``, the rentals in an hour, from calendar and weather.
``casual`` and ``registered`` are dropped because they add up to ``cnt`` (a
model given them would read the answer off its inputs: target leakage), and
``instant`` and ``dteday`` are dropped because they only number the rows.
The split is by time, as a deployed model meets the future: train on every
hour before 2012-09-01, test on September to December 2012.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import typer

from mlcycle.cli._context import console, load

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

    from mlcycle import ActiveRun, Workspace

__all__ = ["EXPERIMENT", "SPLIT_DATE", "demo"]

EXPERIMENT = "bike-demand"
SPLIT_DATE = "2012-09-01"
SEED = 42
TARGET = "cnt"
CATEGORICAL = ["season", "mnth", "hr", "weekday", "weathersit"]
NUMERIC = ["yr", "holiday", "workingday", "temp", "atemp", "hum", "windspeed"]
GBM_ITERATIONS = 300
HISTORY_EVERY = 10


def demo(ctx: typer.Context) -> None:
    """Track three models on the Bike Sharing data.

    Trains a mean baseline, a ridge regression and gradient boosting to predict
    hourly bike rentals (time-based split: train before 2012-09-01, test after),
    records each as a run of experiment bike-demand and prints the comparison.
    Uses the project found from the working directory, or creates one there.
    """
    from mlcycle.project import init_project
    from mlcycle.settings import CONFIG_FILE

    out = console()
    settings = load(ctx)
    if not (settings.home / CONFIG_FILE).is_file():
        init_project(settings.home)
        out.print(f"initialised an mlcycle project in {settings.home}")
    started = time.perf_counter()
    results = _train_all(settings)
    out.print(_results_table(results))
    out.print(
        "★ best per metric: ↓ lowest for loss-like metrics (rmse, mae), ↑ highest otherwise (r2)"
    )
    out.print(f"tracked {len(results)} runs in {time.perf_counter() - started:.1f}s")
    ids = " ".join(result["run_id"] for result in results)
    out.print("\nNext, try:")
    out.print(f"  mlcycle runs list -e {EXPERIMENT}", markup=False)
    out.print(f"  mlcycle runs compare {ids}", markup=False, soft_wrap=True)
    out.print(
        "  mlcycle runs list --where 'metrics.rmse < 100' --order-by metrics.rmse", markup=False
    )


def _train_all(settings: Any) -> list[dict[str, Any]]:  # Any: Settings, JSON-like results
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    from mlcycle import Workspace

    progress = Progress(
        TextColumn("{task.description:<28}"), BarColumn(), TimeElapsedColumn(), console=console()
    )
    # One OpenMP thread: on a busy machine, gradient boosting's spinning thread pool
    # made the fit 40x slower (53 s instead of 1.3 s with 2 cores and a load of 8).
    with progress, threadpool_limits(limits=1, user_api="openmp"):
        task = progress.add_task("loading Bike Sharing data", total=4)
        train, test = _load_split()
        progress.advance(task)
        workspace = Workspace.open(settings)
        try:
            results = []
            for kind in ("baseline", "ridge", "gbm"):
                progress.update(task, description=f"training {kind}")

                def note(text: str) -> None:
                    progress.update(task, description=text)

                results.append(_train_one(workspace, kind, train=train, test=test, note=note))
                progress.advance(task)
            progress.update(task, description="done")
        finally:
            workspace.close()
    return results


def _load_split() -> tuple[pd.DataFrame, pd.DataFrame]:
    import pandas as pd

    from mlcycle.datasets import BIKE_SHARING_HOURLY

    frame = pd.read_csv(BIKE_SHARING_HOURLY, parse_dates=["dteday"])
    # casual + registered == cnt: keeping them would leak the target into the features.
    frame = frame.drop(columns=["casual", "registered", "instant"])
    before = frame["dteday"] < pd.Timestamp(SPLIT_DATE)
    return frame[before].reset_index(drop=True), frame[~before].reset_index(drop=True)


def _model(kind: str) -> tuple[Any, dict[str, Any]]:  # Any: an sklearn estimator, its params
    from sklearn.compose import ColumnTransformer
    from sklearn.dummy import DummyRegressor
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    if kind == "baseline":
        return DummyRegressor(strategy="mean"), {"model": "mean", "strategy": "mean"}
    if kind == "ridge":
        encode = ColumnTransformer(
            [("onehot", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)],
            remainder="passthrough",
        )
        return make_pipeline(encode, Ridge(alpha=1.0)), {
            "model": "ridge",
            "alpha": 1.0,
            "one_hot": ",".join(CATEGORICAL),
        }
    params = {"max_iter": GBM_ITERATIONS, "learning_rate": 0.1, "max_leaf_nodes": 31}
    gbm = HistGradientBoostingRegressor(**params, early_stopping=False, random_state=SEED)
    return gbm, {"model": "gbm", **params, "random_state": SEED}


def _train_one(
    workspace: Workspace,
    kind: str,
    *,
    train: pd.DataFrame,
    test: pd.DataFrame,
    note: Callable[[str], None],
) -> dict[str, Any]:  # Any: JSON-like results
    import mlcycle as mc

    features = CATEGORICAL + NUMERIC
    model, params = _model(kind)
    with workspace.start_run(
        EXPERIMENT,
        name=kind,
        params={
            **params,
            "target": TARGET,
            "features": len(features),
            "split": f"train < {SPLIT_DATE} <= test",
            "train_rows": len(train),
            "test_rows": len(test),
        },
        tags={"demo": "true", "dataset": "uci-bike-sharing-hourly", "stage": "first-slice"},
    ) as run:
        mc.seed_everything(SEED)
        model.fit(train[features], train[TARGET])
        if kind == "gbm":
            _log_learning_curve(run, model, features=test[features], target=test[TARGET], note=note)
        predictions = model.predict(test[features])
        metrics = _scores(test[TARGET], predictions)
        run.log_metrics(metrics)
        sample = test[["dteday", "hr", TARGET]].head(200).assign(prediction=predictions[:200])
        sample["dteday"] = sample["dteday"].dt.strftime("%Y-%m-%d")
        run.log_artifact(sample, name="predictions_sample")
        run.log_artifact({"model": kind, "params": params, "test_metrics": metrics}, name="report")
        return {"model": kind, **metrics, "run_id": run.id}


def _log_learning_curve(
    run: ActiveRun,
    model: Any,  # Any: a fitted HistGradientBoostingRegressor
    *,
    features: pd.DataFrame,
    target: pd.Series[float],
    note: Callable[[str], None],
) -> None:
    """Test RMSE after every ``HISTORY_EVERY`` trees, as the history of ``rmse_by_iteration``."""
    for iteration, predictions in enumerate(model.staged_predict(features), start=1):
        if iteration % HISTORY_EVERY == 0:
            run.log_metric(
                "rmse_by_iteration", _scores(target, predictions)["rmse"], step=iteration
            )
            note(f"training gbm ({iteration} trees)")


def _scores(truth: Any, predictions: Any) -> dict[str, float]:  # Any: array-likes
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {
        "rmse": float(mean_squared_error(truth, predictions) ** 0.5),
        "mae": float(mean_absolute_error(truth, predictions)),
        "r2": float(r2_score(truth, predictions)),
    }


def _results_table(results: list[dict[str, Any]]) -> Any:  # Any: results, a rich Table
    from rich.table import Table

    from mlcycle.cli._tables import best_value, format_number, lower_is_better

    keys = ("rmse", "mae", "r2")
    table = Table(title=f"{EXPERIMENT}: test set {SPLIT_DATE} to 2012-12-31")
    table.add_column("model")
    for key in keys:
        table.add_column(f"{key} {'↓' if lower_is_better(key) else '↑'}", justify="right")
    table.add_column("run id", no_wrap=True, min_width=26)
    best = {key: best_value(key, [result[key] for result in results]) for key in keys}
    for result in results:
        cells = [
            f"[bold green]★ {format_number(result[key])}[/]"
            if result[key] == best[key]
            else format_number(result[key])
            for key in keys
        ]
        table.add_row(result["model"], *cells, result["run_id"])
    return table
