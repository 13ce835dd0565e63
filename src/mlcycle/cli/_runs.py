"""``mlcycle runs``: list, show and compare tracked runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlcycle.cli._context import console, open_workspace
from mlcycle.cli._tables import (
    best_value,
    format_number,
    json_number,
    lower_is_better,
    metric_keys,
    rule_of,
)

if TYPE_CHECKING:
    from rich.table import Table

    from mlcycle.store import MetadataStore, Run

__all__ = ["app"]

app = typer.Typer(
    help="List, show and compare tracked runs.", no_args_is_help=True, rich_markup_mode=None
)

LIST_METRICS = 4
STATUS_STYLE = {"running": "cyan", "finished": "green", "failed": "red", "killed": "yellow"}


@app.command("list")
def list_runs(  # noqa: PLR0917 (Typer maps each parameter to an option)
    ctx: typer.Context,
    experiment: Annotated[
        list[str] | None,
        typer.Option(
            "--experiment", "-e", help="Only runs of this experiment (repeat for several)."
        ),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            "-w",
            help="Filter, e.g. \"metrics.rmse < 45 and params.model = 'gbm'\" "
            "(grammar: docs/query-language.md). Metrics compare on their latest value.",
        ),
    ] = None,
    order_by: Annotated[
        list[str] | None,
        typer.Option(
            "--order-by",
            "-o",
            help="Sort key such as metrics.rmse or 'metrics.r2 DESC' (repeat for ties). "
            "Default: newest first.",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="At most this many runs.")
    ] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List runs, newest first.

    Filter with --experiment and --where, sort with --order-by (metrics compare and
    sort on their latest value).
    """
    with open_workspace(ctx, reap=True) as workspace:
        runs = workspace.metadata.search_runs(
            experiments=experiment or None, where=where, order_by=order_by or (), limit=limit
        )
    if as_json:
        typer.echo(json.dumps([run_summary(run) for run in runs], indent=2))
        return
    out = console()
    if not runs:
        out.print("no runs match; track one with the SDK or run [bold]mlcycle demo[/]")
        return
    out.print(_list_table(runs))
    out.print(
        f"{len(runs)} run(s). Every metric and param: [bold]mlcycle runs show RUN_ID[/], "
        "[bold]mlcycle runs compare RUN_ID...[/] or --json"
    )


def _list_table(runs: Sequence[Run]) -> Table:
    from rich.table import Table

    keys = _list_metric_keys(runs)
    several = len({run.experiment_name for run in runs}) > 1
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("run id", no_wrap=True)
    if several:
        table.add_column("experiment", overflow="ellipsis")
    table.add_column("name", overflow="ellipsis")
    table.add_column("status", no_wrap=True)
    table.add_column("started", no_wrap=True)
    for key in keys:
        table.add_column(key, justify="right", no_wrap=True)
    for run in runs:
        cells = [run.id, *([run.experiment_name] if several else []), run.name, _status(run)]
        cells.append(f"{run.start_time:%Y-%m-%d %H:%M:%S}")
        table.add_row(*cells, *(format_number(run.metrics.get(key), digits=4) for key in keys))
    return table


def _list_metric_keys(runs: Sequence[Run]) -> list[str]:
    """The metrics most runs have (at most ``LIST_METRICS``), in name order."""
    counts: dict[str, int] = {}
    for run in runs:
        for key in run.metrics:
            counts[key] = counts.get(key, 0) + 1
    common = sorted(counts, key=lambda key: (-counts[key], key))[:LIST_METRICS]
    return sorted(common)


def _status(run: Run) -> str:
    style = STATUS_STYLE.get(str(run.status), "white")
    return f"[{style}]{run.status}[/]"


def run_summary(run: Run) -> dict[str, Any]:  # Any: JSON values
    """A run as JSON: its identity, status, params, latest metrics and tags."""
    return {
        "run_id": run.id,
        "experiment": run.experiment_name,
        "name": run.name,
        "status": str(run.status),
        "start_time": run.start_time.isoformat(),
        "end_time": run.end_time.isoformat() if run.end_time else None,
        "actor": run.actor,
        "parent_id": run.parent_id,
        "params": dict(run.params),
        "metrics": {key: json_number(value) for key, value in run.metrics.items()},
        "tags": dict(run.tags),
    }


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run's id, as `mlcycle runs list` shows it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show one run in detail.

    Params, latest metrics, tags, git commit, command, seed, environment, artifacts
    and lineage parents.
    """
    with open_workspace(ctx, reap=True) as workspace:
        details = _details(workspace.metadata, run_id)
    if as_json:
        typer.echo(json.dumps(details, indent=2))
        return
    _print_details(details)


def _details(store: MetadataStore, run_id: str) -> dict[str, Any]:  # Any: JSON values
    from mlcycle.store import ancestry

    run = store.get_run(run_id)
    details = run_summary(run)
    details["git"] = {"commit": run.git_commit, "dirty": run.git_dirty}
    details["command"] = run.command
    details["seed"] = run.seed
    details["error"] = (
        {"type": run.error.type, "message": run.error.message, "traceback": run.error.traceback}
        if run.error
        else None
    )
    details["environment"] = None
    if run.environment_digest:
        env = store.get_environment(run.environment_digest)
        details["environment"] = {
            "digest": env.digest,
            "python": env.python,
            "platform": env.platform,
            "packages": dict(env.packages),
        }
    details["artifacts"] = [
        {"name": a.name, "size": a.size, "media_type": a.media_type, "digest": a.digest}
        for a in store.list_artifacts(run.id)
    ]
    tree = ancestry(store, f"run:{run.id}")
    details["lineage"] = tree.to_dict()
    details["lineage_lines"] = tree.lines() if tree.parents else []
    return details


def _print_details(details: dict[str, Any]) -> None:  # Any: JSON values
    from rich.table import Table

    out = console()
    out.print(f"[bold]run {details['run_id']}[/] ({details['name']})")
    git = details["git"]
    facts = {
        "experiment": details["experiment"],
        "status": details["status"],
        "actor": details["actor"],
        "started": details["start_time"],
        "ended": details["end_time"] or "",
        "parent": details["parent_id"] or "",
        "git": f"{git['commit'] or ''}{' (dirty)' if git['dirty'] else ''}",
        "command": details["command"] or "",
        "seed": "" if details["seed"] is None else str(details["seed"]),
    }
    for key, value in facts.items():
        if value:
            out.print(f"  {key:<11} {value}")
    if details["error"]:
        error = details["error"]
        out.print(f"  [red]error[/]       {error['type']}: {error['message']}")
    for title, mapping in (
        ("params", details["params"]),
        ("metrics (latest)", details["metrics"]),
        ("tags", details["tags"]),
    ):
        if mapping:
            table = Table("key", "value", title=title, title_justify="left")
            for key, value in sorted(mapping.items()):
                shown = format_number(value) if isinstance(value, float) else str(value)
                table.add_row(key, shown)
            out.print(table)
    env = details["environment"]
    if env:
        out.print(
            f"environment {env['digest'][:19]}: Python {env['python']}, {env['platform']}, "
            f"{len(env['packages'])} packages",
            soft_wrap=True,
        )
    if details["artifacts"]:
        table = Table("name", "size", "type", "digest", title="artifacts", title_justify="left")
        for artifact in details["artifacts"]:
            table.add_row(
                artifact["name"],
                f"{artifact['size']:,} B",
                artifact["media_type"],
                artifact["digest"][:19],
            )
        out.print(table)
    if details["lineage_lines"]:
        out.print("lineage (what this run was made from):")
        for line in details["lineage_lines"]:
            out.print(f"  {line}", markup=False, soft_wrap=True)


@app.command("compare")
def compare(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids.")],
) -> None:
    """Compare runs side by side.

    Params and latest metrics, one column per run. The best value of each metric is
    starred: lowest for loss-like names (rmse, mae, mse, loss, error, ...), highest
    otherwise.
    """
    with open_workspace(ctx, reap=True) as workspace:
        runs = [workspace.metadata.get_run(run_id) for run_id in run_ids]
    out = console()
    out.print(comparison_table(runs))
    out.print(
        "[bold green]★[/] best value per metric: lowest for loss-like names "
        "(rmse, mae, mse, loss, error, ...), highest otherwise. "
        "[yellow]Yellow[/] params differ between runs."
    )


def comparison_table(runs: Sequence[Run]) -> Table:
    """Params and latest metrics, one column per run, best metric values marked with a star."""
    from rich.table import Table

    table = Table("", title="run comparison")
    for run in runs:
        table.add_column(f"{run.name}\n{run.id}", justify="right")
    table.add_row("experiment", *(run.experiment_name for run in runs))
    table.add_row("status", *(_status(run) for run in runs))
    for key in sorted({key for run in runs for key in run.params}):
        texts = [run.params.get(key) for run in runs]
        style = "yellow" if len(set(texts)) > 1 else ""
        table.add_row(
            f"params.{key}", *(f"[{style}]{v}[/]" if style and v else v or "" for v in texts)
        )
    table.add_section()
    for key in metric_keys(run.metrics for run in runs):
        values = [run.metrics.get(key) for run in runs]
        best = best_value(key, values) if sum(v is not None for v in values) > 1 else None
        arrow = "↓" if lower_is_better(key) else "↑"
        cells = [
            f"[bold green]★ {format_number(v)}[/]"
            if v is not None and v == best
            else format_number(v)
            for v in values
        ]
        table.add_row(f"metrics.{key} {arrow} ({rule_of(key)})", *cells)
    return table
