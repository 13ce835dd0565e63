"""``mlcycle demo``: train, register, gate and promote models on the bundled Bike Sharing data.

The task: predict ``cnt``, the rentals in an hour, from calendar and weather.
``casual`` and ``registered`` are dropped because they add up to ``cnt`` (a
model given them would read the answer off its inputs: target leakage), and
``instant`` and ``dteday`` are dropped because they only number the rows.
The split is by time, as a deployed model meets the future: train on every
hour before 2012-09-01, test on September to December 2012.

Before training, the demo walks the data stage: it registers the bundled CSV
as dataset ``bike`` (a no-op when that content is already the latest
version, so the demo can run again), infers its schema into
``schemas/bike.yaml`` and validates the version against it. Each run then
loads that exact version, so its lineage lists ``data:/bike/N``.

The schema file belongs to the project once someone edits it. The demo writes
it with a first line saying so; it rewrites the file only while that line is
there, and otherwise validates against the file as it finds it (and stops,
training nothing, when the data breaks it).

After training, each run's model is registered as a version of model
``bike-demand`` (with the run's split, so the gates can show the test rows
were never trained on), every version is evaluated by the gates on the test
months, and the best version that passes them all is promoted to
``production``. A model that is no better than a mean baseline, or worse
than the production version of an earlier demo, stays where it is.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import typer

from mlcycle.cli._context import console, load

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import pandas as pd
    from rich.console import Console

    from mlcycle import ActiveRun, Workspace
    from mlcycle.settings import Settings
    from mlcycle.store import DatasetVersion

__all__ = ["DATASET", "DEMO_SCHEMA_MARK", "EXPERIMENT", "MODEL", "SPLIT_DATE", "demo"]

EXPERIMENT = "bike-demand"
MODEL = "bike-demand"
DATASET = "bike"
DATASET_KEY = ("dteday", "hr")
TIME_COLUMN = "dteday"
DEMO_SCHEMA_MARK = (
    "# Written by `mlcycle demo`, which rewrites this file while this line is here; "
    "delete this line to keep your edits."
)
"""The first line of a schema file the demo wrote (and may therefore rewrite)."""
LEAKY = ["casual", "registered", "instant"]
SPLIT_DATE = "2012-09-01"
SEED = 42
TARGET = "cnt"
CATEGORICAL = ["season", "mnth", "hr", "weekday", "weathersit"]
NUMERIC = ["yr", "holiday", "workingday", "temp", "atemp", "hum", "windspeed"]
GBM_ITERATIONS = 300
HISTORY_EVERY = 10


def demo(ctx: typer.Context) -> None:
    """Version, validate, train, register, gate and promote on the Bike Sharing data.

    Registers the bundled hourly data as dataset bike (no new version when it
    is unchanged), infers its schema into schemas/bike.yaml (kept as it is if
    you edited it: see docs/cli.md), validates the data against it, then
    trains a mean baseline, a ridge regression and gradient boosting on that
    dataset version to predict hourly rentals (train before 2012-09-01, test
    after), records each as a run of experiment bike-demand, registers each
    as a version of model bike-demand, runs the validation gates on the test
    months and promotes the best version that passes them to production.
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
    results = _run(settings, out)
    out.print(_results_table(results))
    out.print(
        "★ best per metric: ↓ lowest for loss-like metrics (rmse, mae), ↑ highest otherwise (r2)"
    )
    out.print(_gates_line(results))
    out.print(f"tracked {len(results)} runs in {time.perf_counter() - started:.1f}s")
    ids = " ".join(result["run_id"] for result in results)
    gbm = next(result["run_id"] for result in results if result["model"] == "gbm")
    out.print("\nNext, try:")
    for line in (
        f"  mlcycle data show {DATASET}            # the profile of every column",
        f"  mlcycle data validate {DATASET}        # against schemas/{DATASET}.yaml",
        f"  mlcycle runs show {gbm}   # its lineage lists the dataset version",
        f"  mlcycle models show {MODEL}        # versions, aliases and gate results",
        f"  mlcycle models lineage models:/{MODEL}@production",
        f"  mlcycle models history {MODEL}",
        f"  mlcycle runs list -e {EXPERIMENT}",
        f"  mlcycle runs compare {ids}",
        "  mlcycle runs list --where 'metrics.rmse < 100' --order-by metrics.rmse",
    ):
        out.print(line, markup=False, soft_wrap=True)


def _run(settings: Settings, out: Console) -> list[dict[str, Any]]:  # Any: JSON-like results
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    from mlcycle import Workspace

    progress = Progress(
        TextColumn("{task.description:<28}"), BarColumn(), TimeElapsedColumn(), console=out
    )
    # One OpenMP thread: on a busy machine, gradient boosting's spinning thread pool
    # made the fit 40x slower (53 s instead of 1.3 s with 2 cores and a load of 8).
    with progress, threadpool_limits(limits=1, user_api="openmp"):
        task = progress.add_task("registering dataset bike", total=7)
        workspace = Workspace.open(settings)
        try:
            version = _register(workspace, out)
            progress.advance(task)
            progress.update(task, description="inferring its schema")
            schema_path = _write_schema(workspace, version, settings, out)
            progress.advance(task)
            progress.update(task, description="validating it")
            _validate(workspace, version, schema_path, out)
            progress.advance(task)
            results = []
            for kind in ("baseline", "ridge", "gbm"):
                progress.update(task, description=f"training {kind}")

                def note(text: str) -> None:
                    progress.update(task, description=text)

                results.append(_train_one(workspace, kind, version=version, note=note))
                progress.advance(task)
            progress.update(task, description="running the gates")
            _gate_and_promote(workspace, results, version=version)
            progress.advance(task)
            progress.update(task, description="done")
        finally:
            workspace.close()
    return results


def _register(workspace: Workspace, out: Console) -> DatasetVersion:
    """The bundled CSV as the latest version of ``bike``; the same content makes no new one."""
    from mlcycle.datasets import BIKE_SHARING_HOURLY
    from mlcycle.errors import NotFound

    try:
        before: int | None = workspace.data.get(DATASET).version
    except NotFound:
        before = None
    version = workspace.data.register(
        DATASET,
        BIKE_SHARING_HOURLY,
        mode="overwrite",  # the file is the whole dataset; unchanged content is a no-op
        time_column=TIME_COLUMN,
        key=list(DATASET_KEY),
        description="UCI Bike Sharing, hourly counts with calendar and weather (CC BY 4.0)",
    )
    ref = f"{version.name}/{version.version}"
    if version.version == before:
        out.print(f"dataset {ref} is up to date: {version.rows:,} rows (no new version)")
    else:
        out.print(
            f"registered dataset {ref}: {version.rows:,} rows, {len(version.columns)} columns "
            f"from {BIKE_SHARING_HOURLY.name}"
        )
    return version


def _write_schema(
    workspace: Workspace, version: DatasetVersion, settings: Settings, out: Console
) -> Path:
    """Infer the schema into ``schemas/bike.yaml``, unless the project owns that file now."""
    from mlcycle.cli._data import default_schema_path
    from mlcycle.validate import infer_schema

    path = default_schema_path(settings, DATASET)
    shown = path.relative_to(settings.home)
    if path.exists() and not _written_by_demo(path):
        out.print(f"kept {shown} (edited or written by you; the demo leaves it as it is)")
        return path
    schema = infer_schema(version.ref, registry=workspace.data, key=list(DATASET_KEY), save=False)
    text = f"{DEMO_SCHEMA_MARK}\n{schema.to_yaml()}"
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        out.print(f"schema {shown} is up to date")
        return path
    action = "rewrote" if path.exists() else "wrote"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    out.print(f"{action} {shown}: {len(schema.columns)} columns, key ({', '.join(schema.key)})")
    return path


def _written_by_demo(path: Path) -> bool:
    with path.open(encoding="utf-8", errors="replace") as stream:
        return stream.readline().rstrip("\n") == DEMO_SCHEMA_MARK


def _validate(workspace: Workspace, version: DatasetVersion, schema: Path, out: Console) -> None:
    """Check the version against the schema; errors stop the demo before any training."""
    from mlcycle.errors import ValidationFailed
    from mlcycle.validate import check, load_schema

    report = check(version.ref, load_schema(schema), registry=workspace.data)
    ref = f"{version.name}/{version.version}"
    verdict = "[green]passed[/]" if report.ok else "[red]failed[/]"
    shown = f"{schema.parent.name}/{schema.name}"
    out.print(f"validated {ref} against {shown}: {verdict}, {report}", soft_wrap=True)
    if not report.ok:
        raise ValidationFailed(
            f"dataset {ref} breaks {schema} ({len(report.errors)} error(s)); no model was "
            f"trained. Fix the schema file, or delete it to let the demo infer a fresh one"
        )


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    import pandas as pd

    frame = frame.drop(columns=LEAKY)  # casual + registered == cnt: they leak the target
    frame["dteday"] = pd.to_datetime(frame["dteday"])
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
    version: DatasetVersion,
    note: Callable[[str], None],
) -> dict[str, Any]:  # Any: JSON-like results
    import mlcycle as mc

    features = CATEGORICAL + NUMERIC
    model, params = _model(kind)
    ref = f"{version.name}/{version.version}"
    with workspace.start_run(
        EXPERIMENT,
        name=kind,
        params={
            **params,
            "target": TARGET,
            "features": len(features),
            "split": f"train < {SPLIT_DATE} <= test",
            "dataset": ref,
        },
        tags={"demo": "true", "dataset": "uci-bike-sharing-hourly", "stage": "data"},
    ) as run:
        # Loaded inside the run, so the run records data:/bike/N as its input.
        train, test = _split(workspace.data.load(ref))
        run.log_params({"train_rows": len(train), "test_rows": len(test)})
        # Recorded so the registry's gates can check that the test rows were never trained on.
        run.log_split(ref, train, test, time_column=TIME_COLUMN, test_from=SPLIT_DATE)
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
        registered = workspace.registry.register(
            MODEL,
            model,
            run=run,
            input_example=test[features].head(5),
            metrics=metrics,
            tags={"algo": kind, "owner": "mlcycle demo", "purpose": "hourly bike rentals"},
        )
        return {"model": kind, **metrics, "run_id": run.id, "version": registered.version}


def _gate_and_promote(
    workspace: Workspace,
    results: list[dict[str, Any]],  # Any: JSON-like results
    *,
    version: DatasetVersion,
) -> None:
    """Evaluate each new version on the test months; promote the best one that passes."""
    ref = f"{version.name}/{version.version}"
    train, test = _split(workspace.data.load(ref))
    for result in results:
        evaluation = workspace.registry.evaluate(
            f"{MODEL}/{result['version']}", test, train_data=train, target=TARGET
        )
        result["gates"] = evaluation
    passing = [result for result in results if result["gates"].passed]
    if not passing:
        return
    best = min(passing, key=lambda result: result["rmse"])
    workspace.registry.promote(
        MODEL,
        best["version"],
        to="production",
        reason=f"mlcycle demo: lowest test rmse ({best['rmse']:.1f}) of the versions that passed",
    )
    best["promoted"] = True


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
    table.add_column("version", justify="right")
    table.add_column("gates")
    table.add_column("run id", no_wrap=True, min_width=26)
    best = {key: best_value(key, [result[key] for result in results]) for key in keys}
    for result in results:
        cells = [
            f"[bold green]★ {format_number(result[key])}[/]"
            if result[key] == best[key]
            else format_number(result[key])
            for key in keys
        ]
        evaluation = result["gates"]
        failed = len(evaluation.failures)
        verdict = "[green]passed[/]" if evaluation.passed else f"[red]{failed} failed[/]"
        shown = f"{MODEL}/{result['version']}"
        if result.get("promoted"):
            shown += " → production"
        table.add_row(result["model"], *cells, shown, verdict, result["run_id"])
    return table


def _gates_line(results: list[dict[str, Any]]) -> str:  # Any: JSON-like results
    promoted = [result for result in results if result.get("promoted")]
    failing = [
        f"{result['model']} ({', '.join(gate.name for gate in result['gates'].failures)})"
        for result in results
        if not result["gates"].passed
    ]
    lines = [f"gates failed: {'; '.join(failing)}"] if failing else []
    if promoted:
        best = promoted[0]
        lines.append(
            f"promoted {MODEL}/{best['version']} ({best['model']}) to production: it passed "
            "every gate with the lowest rmse"
        )
    else:
        lines.append("no version passed every gate: production is unchanged")
    return "\n".join(lines)
