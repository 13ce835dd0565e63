"""What a deployment's stored monitor results show: the offline report and the age-quality curve.

The report reads the stored time series: drift per feature in the latest
window, drift share and performance over time, latency, and the table of
every window, as one HTML page (inline SVG, nothing fetched) and the same
numbers as JSON. It ends with the age-versus-quality curve, the one part that
loads models and reads labelled predictions.

The age-versus-quality curve loads every registered version of the served
model and scores each on the latest window that has labels, so a team sees
how much a model loses per day of age and how often to retrain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.errors import MlcycleError, NotFound
from mlcycle.monitor._html import STYLE, line_chart
from mlcycle.serve import FeedbackLog
from mlcycle.settings import MonitorSettings

if TYPE_CHECKING:
    import pandas as pd

    from mlcycle.monitor._sources import Sources
    from mlcycle.store import MonitorPoint

__all__ = ["age_quality", "write_report"]

_GRID_WINDOWS = 90
PERFORMANCE = ("rmse", "mae", "r2", "accuracy", "precision", "recall", "f1", "roc_auc")
_DAY_S = 86_400.0


def write_report(
    sources: Sources,
    clock: Any,  # Any: the workspace's Clock
    deployment: str,
    out_dir: str | Path,
) -> Path:
    """Write ``monitor-<deployment>.html`` and ``.json`` into ``out_dir``; returns the HTML path."""
    points = sources.results.read_monitor_results(deployment)
    windows = _windows(points)
    labels = sources.monitors.get(deployment, MonitorSettings()).label_column
    curve, why = _curve(sources, clock, deployment, windows)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    body = {
        "deployment": deployment,
        "label_column": labels,
        "windows": [
            {"window_start": start.isoformat(), "window_end": end.isoformat(), "values": values}
            for (start, end), values in windows.items()
        ],
        "age_quality": {"versions": curve, "note": why},
    }
    (folder / f"monitor-{deployment}.json").write_bytes(
        orjson.dumps(body, option=orjson.OPT_INDENT_2)
    )
    html = folder / f"monitor-{deployment}.html"
    page = _page(deployment, windows, labels, _age_section(curve, why))
    html.write_text(page, encoding="utf-8")
    return html


def _curve(
    sources: Sources,
    clock: Any,  # Any: the workspace's Clock
    deployment: str,
    windows: dict[tuple[datetime, datetime], dict[str, float | None]],
) -> tuple[list[dict[str, Any]], str]:  # Any: a version's cells
    """The age-quality rows for the report, or none and why (no labels yet, no such model)."""
    if not windows:
        return [], "no monitored windows yet"
    try:
        frame = age_quality(sources, clock, deployment)
    except NotFound as exc:
        return [], str(exc)
    rows: list[dict[str, Any]] = [  # Any: a version's cells
        {
            str(key): (value.isoformat() if isinstance(value, datetime) else _cell(value))
            for key, value in record.items()
        }
        for record in frame.to_dict("records")
    ]
    return rows, ""


def _cell(value: Any) -> Any:  # Any: a frame's cell (number, text or missing)
    """A frame's cell as JSON: NaN (a metric not computed) is missing."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _age_section(curve: list[dict[str, Any]], why: str) -> str:  # Any: a version's cells
    """Quality against age: every registered version scored on the latest labelled window."""
    head = (
        "<h2>Quality by model age</h2><p>Every registered version scored on the latest "
        "labelled window: how much a model loses per day of age.</p>"
    )
    if not curve:
        return f"{head}<p>Not shown: {escape(why)}.</p>"
    metrics = [m for m in PERFORMANCE if any(row.get(m) is not None for row in curve)]
    ordered = sorted(curve, key=lambda row: float(row["age_days"]))
    series = {
        metric: [(float(row["age_days"]), row.get(metric)) for row in ordered] for metric in metrics
    }
    chart = line_chart(series, label="quality by model age", x_label=_age)
    cells = "".join(f"<th>{escape(m)}</th>" for m in metrics)
    rows = "".join(
        f"<tr><td class='n'>{row['version']}</td><td class='n'>{_show(row['age_days'])}</td>"
        f"<td class='n'>{row['rows']}</td>"
        + "".join(f"<td class='n'>{_show(row.get(m))}</td>" for m in metrics)
        + f"<td>{escape(str(row.get('note') or ''))}</td></tr>"
        for row in ordered
    )
    table = (
        f"<table><tr><th>version</th><th>age (days)</th><th>rows</th>{cells}<th>note</th></tr>"
        f"{rows}</table>"
    )
    return f"{head}{chart}{table}"


def _age(days: float) -> str:
    return f"{days:.4g} days old"


def _windows(
    points: Sequence[MonitorPoint],
) -> dict[tuple[datetime, datetime], dict[str, float | None]]:
    found: dict[tuple[datetime, datetime], dict[str, float | None]] = {}
    for point in points:
        found.setdefault((point.window_start, point.window_end), {})[point.metric] = point.value
    return found


def _page(
    deployment: str,
    windows: dict[tuple[datetime, datetime], dict[str, float | None]],
    labels: str | None,
    ages: str,
) -> str:
    title = f"Monitoring: {deployment}"
    meaning = (
        f"<p>Performance compares predictions with feedback labels of <code>{escape(labels)}"
        "</code>.</p>"
        if labels
        else ""
    )
    if not windows:
        content = (
            "<p>No monitored windows yet: run <code>mlcycle monitor run "
            f"{escape(deployment)}</code> once predictions are logged.</p>"
        )
    else:
        content = _content(windows)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>{meaning}{content}{ages}</body></html>"
    )


def _content(windows: dict[tuple[datetime, datetime], dict[str, float | None]]) -> str:
    ends = [end.timestamp() for _start, end in windows]
    rows = list(windows.values())

    def series(*names: str) -> dict[str, list[tuple[float, float | None]]]:
        return {
            name: [(x, values.get(name)) for x, values in zip(ends, rows, strict=True)]
            for name in names
            if any(values.get(name) is not None for values in rows)
        }

    (last_start, last_end), last = list(windows.items())[-1]
    performance = series(*PERFORMANCE)
    summary = (
        f"<p class='summary'>{len(windows)} windows, from {next(iter(windows))[0]:%Y-%m-%d %H:%M}"
        f" to {last_end:%Y-%m-%d %H:%M} UTC. Latest window: {_show(last.get('rows'))} rows, "
        f"drift share {_show(last.get('drift_share'))}, model age "
        f"{_show(last.get('model_age_days'))} days.</p>"
    )
    return (
        f"{summary}<h2>Drift per feature over time</h2>{_drift_grid(windows)}"
        f"<h2>Drift per feature (window {last_start:%Y-%m-%d %H:%M} to "
        f"{last_end:%Y-%m-%d %H:%M})</h2>{_drift_table(last)}"
        f"<h2>Drift share over time</h2>"
        f"{line_chart(series('drift_share', 'skew_share'), label='drift share')}"
        f"<h2>Performance over time</h2>{line_chart(performance, label='performance')}"
        f"<h2>Latency (ms)</h2>"
        f"{line_chart(series('latency_p50_ms', 'latency_p99_ms'), label='latency')}"
        f"<h2>Rows, labels and errors</h2>"
        f"{line_chart(series('rows', 'labelled_rows'), label='rows')}"
        f"{line_chart(series('error_rate', 'nan_outputs'), label='errors')}"
        f"<h2>Every window</h2>{_window_table(windows)}"
    )


def _drift_grid(windows: dict[tuple[datetime, datetime], dict[str, float | None]]) -> str:
    """One row of cells per feature, one column per window (the latest 90): red drifted."""
    shown = list(windows.items())[-_GRID_WINDOWS:]
    features = sorted(
        {
            name.removeprefix("drifted.")
            for _, v in shown
            for name in v
            if name.startswith("drifted.")
        }
    )
    if not features:
        return "<p>No drift tested yet.</p>"
    cell, label = 10, 160
    svg = (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{label + cell * len(shown) + 10}' "
        f"height='{cell * len(features) + 24}' role='img' aria-label='drift per feature'>"
    )
    parts = [svg]
    for row, feature in enumerate(features):
        y = row * cell
        parts.append(
            f"<text x='{label - 6}' y='{y + cell - 1}' text-anchor='end' font-size='10'>"
            f"{escape(feature)}</text>"
        )
        for column, ((_start, end), values) in enumerate(shown):
            flag = values.get(f"drifted.{feature}")
            colour = "#eeeeee" if flag is None else ("#b00020" if flag == 1.0 else "#4a7bb7")
            number = _show(values.get(f"drift.{feature}"))
            tip = f"{feature}, window ending {end:%Y-%m-%d %H:%M}: {number}"
            parts.append(
                f"<rect x='{label + column * cell}' y='{y}' width='{cell - 1}' "
                f"height='{cell - 1}' fill='{colour}'><title>{escape(tip)}</title></rect>"
            )
    first, last = shown[0][0][1], shown[-1][0][1]
    parts.append(
        f"<text x='{label}' y='{cell * len(features) + 16}' font-size='10'>"
        f"{first:%Y-%m-%d} to {last:%Y-%m-%d}; red: drifted, blue: not, grey: not tested</text>"
        "</svg>"
    )
    return "".join(parts)


def _drift_table(values: dict[str, float | None]) -> str:
    features = sorted(name.removeprefix("drift.") for name in values if name.startswith("drift."))
    if not features:
        return "<p>No drift in this window (no rows or no reference).</p>"
    bars = []
    for feature in features:
        drifted = values.get(f"drifted.{feature}") == 1.0
        number = values.get(f"drift.{feature}")
        colour = "#b00020" if drifted else "#4a7bb7"
        bars.append(
            f"<tr class='{'drifted' if drifted else ''}'><td>{escape(feature)}</td>"
            f"<td class='n'>{_show(number)}</td><td>{'yes' if drifted else 'no'}</td>"
            f"<td><svg width='120' height='12'><rect width='{120 if drifted else 30}' "
            f"height='12' fill='{colour}'/></svg></td></tr>"
        )
    return (
        "<table><tr><th>feature</th><th>p-value or distance</th><th>drifted</th><th></th></tr>"
        f"{''.join(bars)}</table>"
    )


def _window_table(windows: dict[tuple[datetime, datetime], dict[str, float | None]]) -> str:
    shown = [
        "rows",
        "drift_share",
        "prediction_drift",
        "skew_share",
        "labelled_rows",
        *PERFORMANCE,
        "latency_p99_ms",
        "error_rate",
    ]
    present = [name for name in shown if any(name in values for values in windows.values())]
    head = "".join(f"<th>{escape(name)}</th>" for name in present)
    rows = "".join(
        f"<tr><td>{end:%Y-%m-%d %H:%M}</td>"
        + "".join(f"<td class='n'>{_show(values.get(name))}</td>" for name in present)
        + "</tr>"
        for (_start, end), values in windows.items()
    )
    return f"<table><tr><th>window end</th>{head}</tr>{rows}</table>"


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def age_quality(
    sources: Sources,
    clock: Any,  # Any: the workspace's Clock
    deployment: str,
    *,
    model: str | None = None,
    window: str | None = None,
) -> pd.DataFrame:
    """Every registered version of the served model scored on the latest labelled window."""
    import pandas as pd  # noqa: PLC0415  (with the data)

    from mlcycle.monitor._window import performance  # noqa: PLC0415

    config = sources.monitors.get(deployment, MonitorSettings())
    start, end = _labelled_window(sources, clock, deployment, window, config)
    feedback = FeedbackLog(tables=sources.tables, spool_dir=sources.spool_dir, clock=clock)
    rows = feedback.labelled(deployment, since=start, until=end)
    rows = rows.filter(pc.and_(pc.invert(rows.column("shadow")), pc.is_valid(rows["label"])))
    if rows.num_rows == 0:
        raise NotFound(
            f"deployment '{deployment}' has no labelled predictions between {start:%Y-%m-%d %H:%M}"
            f" and {end:%Y-%m-%d %H:%M} UTC; record feedback labels first"
        )
    registry = sources.registry()
    name = model or str(rows.column("model")[rows.num_rows - 1].as_py())
    labels = rows.select(["request_id", "row_index", "label", "labelled_at"])
    inputs = pd.DataFrame(
        {field.name: pc.struct_field(rows["inputs"], field.name) for field in rows["inputs"].type}
    )
    task = config.task or registry.settings.gates_for(name).task
    found: list[dict[str, Any]] = []  # Any: the frame's cells
    for version in registry.versions(name):
        entry: dict[str, Any] = {  # Any: the frame's cells
            "version": version.version,
            "registered_at": version.created_at,
            "age_days": (end - version.created_at).total_seconds() / _DAY_S,
            "rows": rows.num_rows,
            "note": "",
        }
        try:
            loaded = registry.load(version)
            outputs = loaded.predict(inputs)
        except (MlcycleError, KeyError, ValueError) as exc:
            entry["note"] = f"not scored: {exc}"
            found.append(entry)
            continue
        scored = rows.set_column(
            rows.schema.get_field_index("output"), "output", pa.array(list(outputs))
        ).drop_columns(["label", "labelled_at", "label_delay_s"])
        metrics = performance(scored, labels, task=task, config=config)
        entry.update({k: v for k, v in metrics.items() if k in _METRIC_NAMES})
        found.append(entry)
    return pd.DataFrame(found)


_METRIC_NAMES = frozenset(PERFORMANCE)


def _labelled_window(
    sources: Sources,
    clock: Any,  # Any: the workspace's Clock
    deployment: str,
    window: str | None,
    config: MonitorSettings,
) -> tuple[datetime, datetime]:
    from mlcycle.monitor._run import window_length  # noqa: PLC0415

    if window is not None:
        end = clock.now().astimezone(UTC)
        return end - window_length(window, config), end
    stored = sources.results.read_monitor_results(deployment, metrics=["labelled_rows"])
    labelled = [p for p in stored if p.value]
    if not labelled:
        raise NotFound(
            f"deployment '{deployment}' has no monitored window with labels yet; run "
            f"`mlcycle monitor run {deployment}` after feedback arrives, or pass window='7d'"
        )
    return labelled[-1].window_start, labelled[-1].window_end
