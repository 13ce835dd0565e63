"""``mlcycle demo``: the whole loop on a CSV, from the first model to a retrained one in production.

On the simulated clock of the project (``.mlcycle/clock.json``), fast-forwarded
a day at a time: the demo registers the training period of the table as a
dataset (the bundled Bike Sharing hours of January to March 2011 by default),
infers its schema into ``schemas/<dataset>.yaml`` and validates it, trains a
baseline, a linear model and gradient boosting through the pipeline
``mlcycle-demo`` (``mlcycle.cli._demo_pipeline``), gates them and promotes the
best to ``production``, deploys it and serves it with a real ``mlcycle serve``
on a free loopback port (``mlcycle.cli._demo_serving``). Then it replays the
later rows day by day (``mlcycle.cli._demo_replay``): each day's rows in one
request, the labels a day later, the labelled rows appended to the dataset.
After each day the monitors, alerts and training loop run
(``mlcycle.cli._demo_loop``). Last it writes ``demo-<deployment>.html``, an
offline summary with the lineage, plots and the events timeline.

The schema file belongs to the project once someone edits it. The demo writes
it with a first line saying so; it rewrites the file only while that line is
there, and otherwise validates against the file as it finds it (and stops,
training nothing, when the data breaks it).

The demo replays a table's days once per project: time only moves forward,
so a second run in the same folder stops before writing anything and says
where to look instead.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from mlcycle.cli._context import console, load
from mlcycle.errors import AlreadyExists, NotFound

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console
    from rich.progress import Progress, TaskID

    from mlcycle import Workspace
    from mlcycle.cli._demo_data import DemoData
    from mlcycle.cli._demo_loop import Loop
    from mlcycle.cli._demo_replay import Day
    from mlcycle.settings import Settings
    from mlcycle.store import DatasetVersion, StepRun

__all__ = ["DEMO_SCHEMA_MARK", "demo"]

DEMO_SCHEMA_MARK = (
    "# Written by `mlcycle demo`, which rewrites this file while this line is here; "
    "delete this line to keep your edits."
)
"""The first line of a schema file the demo wrote (and may therefore rewrite)."""
_TRAINING_STEPS = 6


def demo(  # noqa: PLR0917  (Typer maps each parameter to an option)
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="FILE",
            help="A CSV file with a header line (default: the bundled Bike Sharing hours).",
            dir_okay=False,
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", metavar="COL", help="The column to predict (needed with --data)."),
    ] = None,
    time_column: Annotated[
        str | None,
        typer.Option(
            "--time",
            metavar="COL",
            help="A column of dates or times; without it, row order is time.",
        ),
    ] = None,
    drop: Annotated[
        list[str] | None,
        typer.Option(
            "--drop",
            metavar="COL",
            help="A column that leaks the target, left out of the inputs (repeat it).",
        ),
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(
            "--days",
            min=2,
            metavar="N",
            help="How many days of later traffic to replay (90 bike, else 60).",
        ),
    ] = None,
) -> None:
    """Run the whole loop on a CSV: train, gate, serve, replay later days, monitor, retrain.

    On the project's simulated clock, fast-forwarded a day at a time: registers
    the early rows as a dataset, infers and checks its schema, trains a
    baseline, a linear model and gradient boosting through the pipeline
    mlcycle-demo, gates them, promotes the best to production and serves it with
    `mlcycle serve` on a free loopback port. Then it replays the later rows day
    by day (one request a day, the labels a day later), and after each day
    runs the monitors, the alerts and the training loop: drift and decay fire
    an alert, a model retrained on recent data is gated, tried as a shadow and
    promoted when it does better. Last it writes demo-DEPLOYMENT.html, an offline
    summary (lineage, plots, events).

    Without --data: the bundled UCI Bike Sharing hours (predict cnt; train on
    January to March 2011, replay from April). With --data FILE --target COL:
    your table. Classification or regression follows from the target: a target
    that is not numeric, or whose values are whole numbers with at most 10
    distinct values, is classification; any other numeric target is regression.
    Without --time, row order is time: the first 30 % of the rows are the
    training period and the rest is spread over --days days. --drop removes
    columns that leak the target (repeat it for each).

    Uses the project found from the working directory, or creates one there;
    the demo replays a table once per project.
    """
    from mlcycle.cli._demo_data import prepare, spec_from_options

    out = console()
    spec = spec_from_options(
        data, target=target, time=time_column, drop=tuple(drop or ()), days=days
    )
    prepared = prepare(spec)  # bad input stops here, before anything is written
    settings = _simulated(load(ctx))
    _refuse_a_second_run(settings, prepared)
    started = time.perf_counter()
    _run(settings, prepared, out, reload=lambda: _simulated(load(ctx)))
    out.print(f"done in {time.perf_counter() - started:.1f}s")


def _simulated(settings: Settings) -> Settings:
    """The settings on the project's simulated clock (``.mlcycle/clock.json``)."""
    from mlcycle.settings import ClockSettings

    return settings.model_copy(update={"clock": ClockSettings(mode="simulated")})


def _refuse_a_second_run(settings: Settings, data: DemoData) -> None:
    """Time only moves forward: a deployment of an earlier demo on this table stops this one."""
    from mlcycle import Workspace
    from mlcycle.settings import CONFIG_FILE

    if not (settings.home / CONFIG_FILE).is_file():
        return
    with Workspace.open(settings) as workspace:
        try:
            workspace.deployments.get(data.spec.model)
        except NotFound:
            return
    name = data.spec.model
    raise AlreadyExists(
        f"this project already has deployment '{name}' from an earlier `mlcycle demo` on "
        f"this table, and the demo replays its days once per project. See what happened with "
        f"`mlcycle monitor report {name}` and demo-{name}.html, or run the demo again in an "
        "empty folder"
    )


def _run(
    settings: Settings, data: DemoData, out: Console, *, reload: Callable[[], Settings]
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    from mlcycle import Workspace
    from mlcycle.cli._demo_loop import Loop, configure
    from mlcycle.project import init_project
    from mlcycle.settings import CONFIG_FILE

    if not (settings.home / CONFIG_FILE).is_file():
        init_project(settings.home)
        out.print(f"initialised an mlcycle project in {settings.home}")
    progress = Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
    )
    # One OpenMP thread: on a busy machine, gradient boosting's spinning thread pool
    # made the fit 40x slower (53 s instead of 1.3 s with 2 cores and a load of 8).
    with progress, threadpool_limits(limits=1, user_api="openmp"):
        task = progress.add_task("registering the training period", total=3 + _TRAINING_STEPS)
        with Workspace.open(settings) as workspace:
            tested = _first_model(workspace, data, progress, task)
        if tested is not None:
            metric, kind = tested
            added = configure(settings.home / CONFIG_FILE, data, test_metric=metric, kind=kind)
            if added:
                out.print(f"added to {CONFIG_FILE}: {', '.join(added)}", markup=False)
            settings = reload()  # with the sections the monitors and the loop read
        with Workspace.open(settings) as workspace:
            loop = Loop(workspace, data)
            days = [] if tested is None else _production(workspace, settings, loop, progress)
            summary = _summary(workspace, data, days, loop)
    for line in summary:
        out.print(line, markup=False, soft_wrap=True)


def _first_model(
    workspace: Workspace, data: DemoData, progress: Progress, task: TaskID
) -> tuple[float, str] | None:
    """Register, validate, train, gate and promote, at the end of the training period.

    Returns the promoted version's test rmse (accuracy for classes) and its
    kind (``gbm``, ``linear``); ``None`` when no version passed the gates.
    """
    import pandas as pd

    from mlcycle.clock import SimulatedClock

    out = progress.console
    clock = cast("SimulatedClock", workspace.clock)
    clock.set((data.start - pd.Timedelta(hours=6)).to_pydatetime())
    dataset = _register(workspace, data, out)
    progress.advance(task)
    progress.update(task, description="inferring its schema")
    schema_path = _write_schema(workspace, data, dataset, out)
    progress.advance(task)
    progress.update(task, description="validating it")
    _validate(workspace, dataset, schema_path, out)
    progress.advance(task)
    promoted = _train(workspace, data, out, lambda record: _tick(progress, task, record))
    progress.update(task, description="trained, gated, promoted")
    if promoted is None:
        out.print("no version passed every gate, so there is nothing to serve")
        return None
    version, kind = promoted
    metric = "rmse" if data.task == "regression" else "accuracy"
    return workspace.registry.get(f"{data.spec.model}/{version}").metrics[metric], kind


def _production(
    workspace: Workspace, settings: Settings, loop: Loop, progress: Progress
) -> list[Day]:
    """Deploy production, serve it, and replay the later days against it."""
    from mlcycle.cli._demo_replay import replay
    from mlcycle.cli._demo_serving import DemoServer

    out = progress.console
    data = loop.data
    name = data.spec.model
    production = workspace.registry.get(f"{name}@production")
    workspace.deployments.deploy(name, model=f"{name}@production")
    task = progress.add_task(f"serving {name}/{production.version}", total=len(data.days))
    with DemoServer(settings, name) as server:
        out.print(
            f"deployed {name} (models:/{name}@production, version {production.version}) and "
            f"serving it at {server.url}; replaying {len(data.days)} days from "
            f"{data.start.date()}"
        )

        def after_day(until: Any) -> list[str]:  # Any: a pandas Timestamp
            notes = loop.after_day(until.to_pydatetime())
            if loop.changed:
                server.follow(workspace)
            today = workspace.clock.now().date()  # the simulated day
            for note in notes:
                out.print(f"{today}  {note}", markup=False, soft_wrap=True)
            return notes

        def shown(day: Day) -> None:
            progress.update(task, description=f"day {day.day.date()}", advance=1)

        return replay(workspace, server, data, after_day=after_day, shown=shown)


def _summary(workspace: Workspace, data: DemoData, days: list[Day], loop: Loop) -> list[str]:
    from mlcycle.cli._demo_report import write_summary

    path = write_summary(workspace, data, days, loop.windows)
    name = data.spec.model
    lines = [f"wrote {path.name}: the lineage, plots and the events timeline (offline HTML)"]
    if days:
        metric = "rmse" if data.task == "regression" else "accuracy"
        first, last = days[: len(days) // 4 or 1], days[-(len(days) // 4 or 1) :]
        lines.append(
            f"served {sum(d.rows for d in days):,} rows over {len(days)} days; production's "
            f"daily {metric}: {_mean(first):.3g} in the first quarter, {_mean(last):.3g} in the "
            "last"
        )
        lines += loop.story()
    home = workspace.settings.home.resolve()
    lines += ["", "Next, try:"]
    if home != Path.cwd().resolve():  # `mlcycle --home demo demo`, as `make demo` runs it
        lines.append(f"  cd {os.path.relpath(home)}")
    lines += [
        "  mlcycle runs list",
        "  mlcycle models list",
        f"  mlcycle models history {name}",
        f"  mlcycle models lineage models:/{name}@production",
        f"  mlcycle data show {data.spec.dataset}",
        "  mlcycle alerts list",
        f"  mlcycle training history {name}",
        f"  mlcycle monitor report {name}",
    ]
    return lines


def _mean(days: list[Day]) -> float:
    return sum(d.metric for d in days) / len(days)


def _tick(progress: Progress, task: TaskID, record: StepRun) -> None:
    from mlcycle.store import StepStatus

    if record.status is StepStatus.RUNNING:
        progress.update(task, description=f"training: {record.step}")
    elif record.status in {StepStatus.COMPLETED, StepStatus.CACHED}:
        progress.advance(task)


def _train(
    workspace: Workspace, data: DemoData, out: Console, progress: Any
) -> tuple[int, str] | None:  # Any: the progress callback
    """Run the pipeline on the training period; show each model, its gates and the promotion.

    Returns the promoted version and its kind, or ``None``.
    """
    from mlcycle.cli._demo_pipeline import MODELS, NAME, demo_training, primary_metric

    spec = data.spec
    run = demo_training.run(
        workspace=workspace,
        progress=progress,
        data=f"{spec.dataset}@latest",
        model=spec.model,
        target=spec.target,
        task=data.task,
        time=spec.time or "",
        drop=",".join(spec.drop),
    )
    out.print(f"ran pipeline {NAME} as run {run.id}")
    metric = primary_metric(data.task)
    kinds = {}
    for kind in MODELS:
        result = cast("dict[str, Any]", run.output(kind))  # Any: JSON
        kinds[result["version"]] = kind
        version = workspace.registry.get(f"{spec.model}/{result['version']}")
        passed = bool(version.evaluation and version.evaluation["passed"])
        out.print(
            f"  {kind:<9} {spec.model}/{result['version']}  test {metric} {result[metric]:.3f}  "
            f"gates {'passed' if passed else 'failed'}  run {result['run_id']}",
            markup=False,
        )
    gated = cast("dict[str, Any]", run.output("gates"))  # Any: JSON
    if gated["promoted"] is not None:
        out.print(
            f"promoted {spec.model}/{gated['promoted']} to production: the best test {metric} "
            "of the versions that passed every gate"
        )
    promoted = cast("int | None", gated["promoted"])
    return None if promoted is None else (promoted, kinds[promoted])


def _register(workspace: Workspace, data: DemoData, out: Console) -> DatasetVersion:
    """The training period as the latest version of the dataset."""
    from mlcycle.cli._demo_data import TIME

    spec = data.spec
    version = workspace.data.register(
        spec.dataset,
        data.initial,
        mode="overwrite",  # the training period is the whole dataset at the start
        time_column=TIME,
        key=list(spec.key) or None,
        description=f"{spec.path.name}: rows before {data.start.date()} (mlcycle demo)",
    )
    out.print(
        f"registered dataset {version.name}/{version.version}: {version.rows:,} rows before "
        f"{data.start.date()}, {len(version.columns)} columns from {spec.path.name}; "
        f"task: {data.task} of '{spec.target}'"
    )
    return version


def _write_schema(
    workspace: Workspace, data: DemoData, version: DatasetVersion, out: Console
) -> Path:
    """Infer the schema into ``schemas/<dataset>.yaml``, unless the project owns that file now."""
    from mlcycle.cli._data import default_schema_path
    from mlcycle.validate import infer_schema

    settings = workspace.settings
    path = default_schema_path(settings, version.name)
    shown = path.relative_to(settings.home)
    if path.exists() and not _written_by_demo(path):
        out.print(f"kept {shown} (edited or written by you; the demo leaves it as it is)")
        return path
    key = list(data.spec.key) or None
    schema = infer_schema(version.ref, registry=workspace.data, key=key, save=False)
    text = f"{DEMO_SCHEMA_MARK}\n{schema.to_yaml()}"
    action = "rewrote" if path.exists() else "wrote"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    out.print(f"{action} {shown}: {len(schema.columns)} columns")
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
