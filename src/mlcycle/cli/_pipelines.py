"""``mlcycle pipelines``: run, list, show and resume pipeline runs.

``run`` takes ``FILE.py:NAME`` (or ``MODULE:NAME``) and ``--param k=v``
values typed by the pipeline's annotations; it prints each step as its state
changes and exits non-zero when the run fails, naming the run to resume.
``--json`` prints one JSON object at the end for programs (the agent).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from mlcycle.cli._context import console, open_workspace

if TYPE_CHECKING:
    from rich.tree import Tree

    from mlcycle.pipeline import PipelineResult
    from mlcycle.store import PipelineLog, PipelineRun, StepRun

__all__ = ["app"]

app = typer.Typer(
    help="Run, list, show and resume pipelines.", no_args_is_help=True, rich_markup_mode=None
)

STATUS_STYLE = {
    "pending": "dim",
    "running": "cyan",
    "completed": "green",
    "cached": "blue",
    "failed": "red",
    "killed": "yellow",
}
MARK = {
    "pending": "·",
    "running": "…",
    "completed": "✓",
    "cached": "⟲",
    "failed": "✗",
    "killed": "☠",
}


def _pairs(values: list[str] | None) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values or []:
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(
                f"{value!r} is not NAME=VALUE (such as n_estimators=200)", param_hint="--param"
            )
        pairs[name.strip()] = text
    return pairs


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _progress(quiet: bool) -> Any:  # Any: a callback taking a StepRun
    out = console()
    shown: dict[str, str] = {}

    def show(record: StepRun) -> None:
        status = record.status.value
        if quiet or shown.get(record.step) == status:
            return
        shown[record.step] = status
        extra = _duration(record.duration_s) if record.status.done else ""
        cached = f" (from run {record.cached_from})" if record.cached_from else ""
        out.print(
            f"  [{STATUS_STYLE[status]}]{MARK[status]} {record.step:<24} {status:<9}[/] "
            f"{extra}{cached}"
        )

    return show


def _summary(record: PipelineRun, steps: list[StepRun]) -> dict[str, Any]:  # Any: JSON
    return {
        "run_id": record.id,
        "pipeline": record.pipeline,
        "target": record.target,
        "status": record.status.value,
        "executor": record.executor,
        "params": record.params,
        "param_sources": record.param_sources,
        "datasets": record.datasets,
        "tracking_run": record.run_id,
        "created_at": record.created_at.isoformat(),
        "ended_at": record.ended_at.isoformat() if record.ended_at else None,
        "resumes": record.resumes,
        "code_changed": record.code_changed,
        "error": record.error,
        "steps": [
            {
                "step": s.step,
                "status": s.status.value,
                "upstream": list(s.upstream),
                "duration_s": s.duration_s,
                "attempts": s.attempts,
                "cached_from": s.cached_from,
                "run_id": s.run_id,
                "outputs": {k: v.to_dict() for k, v in s.outputs.items()},
            }
            for s in steps
        ],
    }


@contextmanager
def _quiet_stdout(as_json: bool) -> Iterator[None]:
    """With ``--json``, what steps print goes to stderr, so stdout holds only the JSON."""
    if not as_json:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _finish(result: PipelineResult, *, as_json: bool) -> None:
    steps = list(result.steps.values())
    if as_json:
        typer.echo(json.dumps(_summary(result.record, steps)))
        return
    cached = sum(1 for s in steps if s.status.value == "cached")
    console().print(
        f"pipeline '{result.record.pipeline}' run {result.id} {result.status.value}: "
        f"{len(steps)} steps, {cached} from the cache. Show it with "
        f"`mlcycle pipelines show {result.id}`"
    )


@app.command("run")
def run(  # noqa: PLR0917 (Typer maps each parameter to an option)
    ctx: typer.Context,
    target: Annotated[
        str, typer.Argument(help="The pipeline: FILE.py:NAME (such as pipelines.py:training).")
    ],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="NAME=VALUE, typed by the pipeline (repeatable)."),
    ] = None,
    executor: Annotated[
        str,
        typer.Option("--executor", "-x", help="local, process (or process:N) or dask://HOST:PORT."),
    ] = "local",
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Run every step, reusing nothing.")
    ] = False,
    trust: Annotated[
        bool, typer.Option("--trust", help="Let pickled step outputs load (they run code).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object with the run at the end.")
    ] = False,
) -> None:
    """Run a pipeline; each step's state is printed as it changes."""
    from mlcycle.pipeline import load_target

    pairs = _pairs(param)
    with open_workspace(ctx) as workspace:
        found = load_target(target, root=workspace.settings.home)
        if not as_json:
            console().print(f"pipeline '{found.name}' ({target}) on {executor}")
        with _quiet_stdout(as_json):
            result = found.run_from_cli(
                pairs,
                workspace=workspace,
                executor=executor,
                no_cache=no_cache,
                trust=trust,
                progress=_progress(as_json),
            )
        _finish(result, as_json=as_json)


@app.command("resume")
def resume(  # noqa: PLR0917 (Typer maps each parameter to an option)
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The pipeline run to resume.")],
    allow_changed_code: Annotated[
        bool,
        typer.Option(
            "--allow-changed-code",
            help="Resume even though the pipeline's code changed since (recorded on the run).",
        ),
    ] = False,
    executor: Annotated[
        str | None,
        typer.Option("--executor", "-x", help="Default: the executor the run used."),
    ] = None,
    trust: Annotated[
        bool, typer.Option("--trust", help="Let pickled step outputs load (they run code).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object with the run at the end.")
    ] = False,
) -> None:
    """Run only the steps of a failed or killed run that did not complete."""
    from mlcycle.pipeline import resume as resume_run

    with open_workspace(ctx) as workspace, _quiet_stdout(as_json):
        result = resume_run(
            run_id,
            workspace=workspace,
            allow_changed_code=allow_changed_code,
            trust=trust,
            executor=executor,
            progress=_progress(as_json),
        )
    _finish(result, as_json=as_json)


@app.command("list")
def list_runs(
    ctx: typer.Context,
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", help="Only runs of this pipeline.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List pipeline runs, newest first (runs whose process died are shown killed)."""
    from rich.table import Table

    from mlcycle.pipeline import reap_stale_pipelines

    with open_workspace(ctx) as workspace:
        reap_stale_pipelines(workspace)
        log = cast("PipelineLog", workspace.metadata)  # the SQL store is every catalog
        runs = log.list_pipeline_runs(pipeline=pipeline, limit=limit)
        steps = {r.id: log.list_step_runs(r.id) for r in runs}
    if as_json:
        typer.echo(json.dumps([_summary(r, steps[r.id]) for r in runs], indent=2))
        return
    table = Table("run", "pipeline", "status", "started", "steps", "cached", "executor")
    for record in runs:
        done = steps[record.id]
        status = record.status.value
        table.add_row(
            record.id,
            record.pipeline,
            f"[{STATUS_STYLE.get(status, '')}]{status}[/]",
            record.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            f"{sum(1 for s in done if s.status.done)}/{len(done)}",
            str(sum(1 for s in done if s.status.value == "cached")),
            record.executor,
        )
    console().print(table)


def _tree(record: PipelineRun, steps: list[StepRun]) -> Tree:
    from rich.tree import Tree

    status = record.status.value
    flags = f", resumed {record.resumes}x" if record.resumes else ""
    flags += ", code changed on resume" if record.code_changed else ""
    root = Tree(
        f"[bold]{record.pipeline}[/] run {record.id} "
        f"[{STATUS_STYLE.get(status, '')}]{status}[/] ({record.executor}{flags})"
    )
    branches: dict[str, Tree] = {}
    position = {s.step: s.position for s in steps}
    for step in steps:
        upstream = sorted(step.upstream, key=lambda name: position.get(name, -1))
        parent = branches.get(upstream[-1]) if upstream else None
        also = upstream[:-1]
        label = _label(step) + (f" [dim](also after {', '.join(also)})[/]" if also else "")
        branches[step.step] = (parent or root).add(label)
    return root


def _label(step: StepRun) -> str:
    status = step.status.value
    parts = [f"[{STATUS_STYLE[status]}]{MARK[status]} {step.step}[/] {status}"]
    if step.duration_s is not None:
        parts.append(_duration(step.duration_s))
    if step.cached_from:
        parts.append(f"cache hit from run {step.cached_from}")
    if step.attempts > 1:
        parts.append(f"{step.attempts} attempts")
    if step.error:
        parts.append(f"[red]{step.error.splitlines()[0][:120]}[/]")
    return "  ".join(parts)


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The pipeline run.")],
    logs: Annotated[bool, typer.Option("--logs", help="Also print each step's output.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a tree.")] = False,
) -> None:
    """Show a run's DAG as a tree: each step's status, duration and cache hits."""
    from mlcycle.pipeline import reap_stale_pipelines

    with open_workspace(ctx) as workspace:
        reap_stale_pipelines(workspace)
        log = cast("PipelineLog", workspace.metadata)  # the SQL store is every catalog
        record = log.get_pipeline_run(run_id)
        steps = log.list_step_runs(run_id)
    if as_json:
        typer.echo(json.dumps(_summary(record, steps), indent=2))
        return
    out = console()
    out.print(_tree(record, steps))
    params = ", ".join(
        f"{k}={v!r} ({record.param_sources.get(k, '?')})" for k, v in record.params.items()
    )
    out.print(f"params: {params or 'none'}")
    if record.datasets:
        out.print("datasets: " + ", ".join(f"{k}={v}" for k, v in record.datasets.items()))
    if record.error:
        out.print(f"[red]error: {record.error}[/]")
    if logs:
        for step in steps:
            if step.logs:
                out.rule(step.step)
                out.print(step.logs, markup=False, highlight=False)
