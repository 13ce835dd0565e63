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
``schemas/bike.yaml`` and validates the version against it. The training
is the pipeline ``bike-demand`` (``mlcycle.cli._demo_pipeline``): it pins
``bike@latest`` to that version when it starts, so each run's lineage lists
``data:/bike/N``.

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

A second demo on unchanged data (and code) is served from the pipeline's
cache end to end: it trains nothing, registers no duplicate versions and
leaves ``production`` alone; new data misses the cache and trains again.

Last, the demo serves ``production`` with ``mlcycle serve`` in a process of
its own and replays the test months against it (``mlcycle.cli._demo_serving``):
throughput, latency, and every replayed prediction found in the prediction log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import typer

from mlcycle.cli._context import console, load
from mlcycle.cli._demo_names import DATASET, EXPERIMENT, MODEL, SPLIT_DATE, TIME_COLUMN
from mlcycle.errors import NotFound

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from rich.console import Console
    from rich.progress import Progress, TaskID

    from mlcycle import Workspace
    from mlcycle.settings import Settings
    from mlcycle.store import DatasetVersion, StepRun

__all__ = ["DATASET", "DEMO_SCHEMA_MARK", "EXPERIMENT", "MODEL", "SPLIT_DATE", "demo"]

DATASET_KEY = ("dteday", "hr")
DEMO_SCHEMA_MARK = (
    "# Written by `mlcycle demo`, which rewrites this file while this line is here; "
    "delete this line to keep your edits."
)
"""The first line of a schema file the demo wrote (and may therefore rewrite)."""
_DOING = {
    "load": "loading the dataset version",
    "split": "splitting it by time",
    "gates": "running the gates",
}


def demo(ctx: typer.Context) -> None:
    """Version, validate, train, register, gate and promote on the Bike Sharing data.

    Registers the bundled hourly data as dataset bike (no new version when it
    is unchanged), infers its schema into schemas/bike.yaml (kept as it is if
    you edited it: see docs/cli.md), validates the data against it, then runs
    the pipeline bike-demand: it trains a mean baseline, a ridge regression
    and gradient boosting on that dataset version to predict hourly rentals
    (train before 2012-09-01, test after), records each as a run of
    experiment bike-demand, registers each as a version of model
    bike-demand, runs the validation gates on the test months and promotes
    the best version that passes them to production. Then it serves
    production with `mlcycle serve` on a free loopback port, replays the
    test months against it in batched requests, shows throughput, latency and
    the predictions in the prediction log, and stops the server. Run again on
    the same data, every step comes from the pipeline cache: nothing is
    trained or registered twice. Uses the project found from the working directory, or
    creates one there.
    """
    from mlcycle.project import init_project
    from mlcycle.settings import CONFIG_FILE

    out = console()
    settings = load(ctx)
    if not (settings.home / CONFIG_FILE).is_file():
        init_project(settings.home)
        out.print(f"initialised an mlcycle project in {settings.home}")
    started = time.perf_counter()
    summary = _run(settings, out)
    results = summary.results
    out.print(_results_table(results))
    out.print(
        "★ best per metric: ↓ lowest for loss-like metrics (rmse, mae), ↑ highest otherwise (r2)"
    )
    out.print(_gates_line(summary))
    _serve(settings, out)
    out.print(f"done in {time.perf_counter() - started:.1f}s")
    ids = " ".join(result["run_id"] for result in results)
    gbm = next(result["run_id"] for result in results if result["model"] == "gbm")
    out.print("\nNext, try:")
    for line in (
        f"  mlcycle pipelines show {summary.run_id}   # the DAG: steps, durations, cache hits",
        f"  mlcycle data show {DATASET}            # the profile of every column",
        f"  mlcycle data validate {DATASET}        # against schemas/{DATASET}.yaml",
        f"  mlcycle runs show {gbm}   # its lineage lists the dataset version",
        f"  mlcycle models show {MODEL}        # versions, aliases and gate results",
        f"  mlcycle models lineage models:/{MODEL}@production",
        f"  mlcycle models history {MODEL}",
        f"  mlcycle serve models:/{MODEL}@production   # then POST /v1/models/{MODEL}:predict",
        f"  mlcycle runs list -e {EXPERIMENT}",
        f"  mlcycle runs compare {ids}",
        "  mlcycle runs list --where 'metrics.rmse < 100' --order-by metrics.rmse",
    ):
        out.print(line, markup=False, soft_wrap=True)


@dataclass
class _Summary:
    """What the demo's pipeline run gave: a row per model, and what the gates step did."""

    run_id: str
    results: list[dict[str, Any]]  # Any: JSON-like results
    gates_cached: bool
    promoted: int | None


def _run(settings: Settings, out: Console) -> _Summary:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    from mlcycle import Workspace

    progress = Progress(
        TextColumn("{task.description:<28}"), BarColumn(), TimeElapsedColumn(), console=out
    )
    # One OpenMP thread: on a busy machine, gradient boosting's spinning thread pool
    # made the fit 40x slower (53 s instead of 1.3 s with 2 cores and a load of 8).
    with progress, threadpool_limits(limits=1, user_api="openmp"):
        task = progress.add_task("registering dataset bike", total=3 + 6)
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
            summary = _train(workspace, out, lambda record: _tick(progress, task, record))
            progress.update(task, description="done")
        finally:
            workspace.close()
    return summary


def _serve(settings: Settings, out: Console) -> None:
    """Serve production in a real server, replay the test months against it, stop it."""
    from mlcycle import Workspace
    from mlcycle.cli._demo_serving import serve_and_replay

    with Workspace.open(settings) as workspace:
        try:
            workspace.registry.get(f"{MODEL}@production")
        except NotFound:
            out.print("no version is in production, so there is nothing to serve")
            return
        with out.status(f"serving models:/{MODEL}@production and replaying the test months"):
            replay = serve_and_replay(workspace, settings)
    for line in replay.lines():
        out.print(line, markup=False, soft_wrap=True)


def _tick(progress: Progress, task: TaskID, record: StepRun) -> None:
    from mlcycle.store import StepStatus

    if record.status is StepStatus.RUNNING:
        doing = _DOING.get(record.step, f"training {record.step}")
        progress.update(task, description=doing)
    elif record.status in {StepStatus.COMPLETED, StepStatus.CACHED}:
        progress.advance(task)


def _train(workspace: Workspace, out: Console, progress: Callable[[StepRun], None]) -> _Summary:
    """Run the pipeline on the latest version of bike; read back what each step gave."""
    from mlcycle.cli._demo_pipeline import MODELS, bike_demand
    from mlcycle.store import StepStatus

    run = bike_demand.run(workspace=workspace, progress=progress)
    cached = sum(step.status is StepStatus.CACHED for step in run.steps.values())
    out.print(
        f"ran pipeline {bike_demand.name} as run {run.id}: {cached} of {len(run.steps)} steps "
        "from the cache"
    )
    results = [dict(cast("dict[str, Any]", run.output(kind))) for kind in MODELS]
    try:
        production: int | None = workspace.registry.get(f"{MODEL}@production").version
    except NotFound:
        production = None
    for result in results:
        version = workspace.registry.get(f"{MODEL}/{result['version']}")
        result["gates"] = version.evaluation or {"passed": False, "results": []}
        result["production"] = result["version"] == production
    gated = cast("dict[str, Any]", run.output("gates"))  # Any: JSON
    return _Summary(
        run_id=run.id,
        results=results,
        gates_cached=run.steps["gates"].status is StepStatus.CACHED,
        promoted=gated["promoted"],
    )


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
        failed = len(_failures(result))
        verdict = "[green]passed[/]" if result["gates"]["passed"] else f"[red]{failed} failed[/]"
        shown = f"{MODEL}/{result['version']}"
        if result["production"]:
            shown += " → production"
        table.add_row(result["model"], *cells, shown, verdict, result["run_id"])
    return table


def _failures(result: dict[str, Any]) -> list[str]:  # Any: JSON-like results
    return [gate["name"] for gate in result["gates"]["results"] if not gate["passed"]]


def _gates_line(summary: _Summary) -> str:
    results = summary.results
    failing = [
        f"{result['model']} ({', '.join(_failures(result))})"
        for result in results
        if not result["gates"]["passed"]
    ]
    lines = [f"gates failed: {'; '.join(failing)}"] if failing else []
    best = next((r for r in results if r["version"] == summary.promoted), None)
    if best is None:
        lines.append("no version passed every gate: production is unchanged")
    elif summary.gates_cached:
        # Same data, same code: the versions were judged (and the best promoted) by an earlier run.
        lines.append(
            f"no new versions to judge: the gates step came from the cache, so production "
            f"was left as it is (the earlier run promoted {MODEL}/{best['version']}, "
            f"{best['model']})"
        )
    else:
        lines.append(
            f"promoted {MODEL}/{best['version']} ({best['model']}) to production: it passed "
            "every gate with the lowest rmse"
        )
    return "\n".join(lines)
