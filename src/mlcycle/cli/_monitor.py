"""``mlcycle monitor``: score windows of a deployment's prediction log, show and report them.

``run`` scores every complete window not stored yet (drift, skew, stability,
latency, staleness, performance on feedback), stores it and evaluates the
alert rules of ``mlcycle.toml`` on it; ``results`` shows the stored time
series; ``report`` writes the offline HTML report and its JSON.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlcycle.cli._context import console, open_workspace
from mlcycle.errors import NotFound, ValidationFailed

if TYPE_CHECKING:
    from mlcycle.monitor import WindowResult

__all__ = ["app", "parse_moment"]

app = typer.Typer(
    help="Monitoring of deployments: score windows of the prediction log, show the stored "
    "results, write the HTML and JSON report.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_SHOWN = ("rows", "drift_share", "prediction_drift", "skew_share", "labelled_rows")
_PERFORMANCE = ("rmse", "mae", "r2", "accuracy", "f1", "roc_auc")


def parse_moment(text: str | None, option: str) -> datetime | None:
    """``2030-05-01`` or ``2030-05-01T06:00`` (UTC unless it says otherwise)."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(
            f"{option} {text!r} is not a date or time; write one such as 2030-05-01 or "
            "2030-05-01T06:00"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@app.command("run")
def run(  # noqa: PLR0917  (Typer passes every option positionally)
    ctx: typer.Context,
    deployment: Annotated[
        str, typer.Argument(help="The deployment, as `mlcycle deploy` named it.")
    ],
    window: Annotated[
        str | None,
        typer.Option(
            "--window", help="Window length: 1h, 6h, 1d (default: [monitors.NAME] or 1d)."
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Score windows from this date or time (UTC).")
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Score windows ending by this date or time (default: now)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Score, store and alert on every complete window of DEPLOYMENT not stored yet."""
    start, end = parse_moment(since, "--since"), parse_moment(until, "--until")
    with open_workspace(ctx) as workspace:
        scored = workspace.monitor.run(deployment, window=window, since=start, until=end)
        alerts = workspace.alerts.list(deployment=deployment, state="firing") if scored else []
    if as_json:
        typer.echo(json.dumps([_window_dict(r) for r in scored], indent=2))
        return
    out = console()
    if not scored:
        out.print(
            f"no new complete window to score for '{deployment}' (every window is stored, or "
            "no predictions are logged yet)",
            markup=False,
        )
        return
    out.print(_table(scored))
    out.print(f"{len(scored)} window(s) scored and stored", markup=False)
    for alert in alerts:
        out.print(f"firing: {alert.rule} ({alert.severity}): {alert.why}", markup=False)


@app.command("results")
def results(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="The deployment.")],
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="Only this metric (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """The stored monitor results of DEPLOYMENT, one row per window and metric."""
    with open_workspace(ctx) as workspace:
        frame = workspace.monitor.results(deployment, metrics=metric or None)
    if as_json:
        typer.echo(frame.to_json(orient="records", date_format="iso"))
        return
    out = console()
    if frame.empty:
        out.print(
            f"no stored results for '{deployment}'; score windows with "
            f"`mlcycle monitor run {deployment}`",
            markup=False,
        )
        return
    from rich.table import Table

    table = Table("window start", "window end", "metric", "value")
    for row in frame.to_dict("records"):
        value = float(row["value"])
        table.add_row(
            f"{row['window_start']:%Y-%m-%d %H:%M}",
            f"{row['window_end']:%Y-%m-%d %H:%M}",
            str(row["metric"]),
            "-" if math.isnan(value) else f"{value:.6g}",
        )
    out.print(table)


@app.command("report")
def report(
    ctx: typer.Context,
    deployment: Annotated[
        str | None,
        typer.Argument(help="The deployment (default: every deployment with stored results)."),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder to write the reports to.", file_okay=False)
    ] = Path(),
) -> None:
    """Write monitor-DEPLOYMENT.html (offline, with plots) and .json for each deployment."""
    with open_workspace(ctx) as workspace:
        sources = workspace.monitor.sources
        assert sources is not None  # a workspace's monitor has its sources
        names = [deployment] if deployment else sources.results.monitored_deployments()
        if not names:
            raise NotFound(
                "no deployment has monitor results yet; run `mlcycle monitor run DEPLOYMENT`"
            )
        written = [workspace.monitor.report(name, out_dir) for name in names]
    out = console()
    for path in written:
        out.print(f"wrote {path} and {path.with_suffix('.json').name}", markup=False)


def _table(scored: list[WindowResult]) -> object:
    from rich.table import Table

    present = [m for m in _PERFORMANCE if any(r.values.get(m) is not None for r in scored)]
    table = Table("window", *_SHOWN, *present, "p99 ms", "errors")
    for r in scored:
        cells = [_show(r.values.get(name)) for name in (*_SHOWN, *present)]
        table.add_row(
            f"{r.window_start:%Y-%m-%d %H:%M} to {r.window_end:%Y-%m-%d %H:%M}",
            *cells,
            _show(r.values.get("latency_p99_ms")),
            _show(r.values.get("error_rate")),
        )
    return table


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _window_dict(result: WindowResult) -> dict[str, object]:
    return {
        "deployment": result.deployment,
        "window_start": result.window_start.isoformat(),
        "window_end": result.window_end.isoformat(),
        "rows": result.rows,
        "values": result.values,
    }
