"""The demo's summary page: one offline HTML file with the lineage, plots and the events.

``demo-<deployment>.html`` in the project folder, with inline CSS and SVG (no
script, nothing fetched): production's daily error (or accuracy) against the
true values as the days were replayed, the rows served per day, each day's
monitor values where the monitors ran, the lineage of the model in
production, and the timeline of the project's events, from the first dataset
version to the last promotion.
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from mlcycle import Workspace
    from mlcycle.cli._demo_data import DemoData
    from mlcycle.cli._demo_replay import Day
    from mlcycle.monitor import WindowResult
    from mlcycle.store import Event

__all__ = ["Series", "line_chart", "write_summary"]

_WIDTH = 760
_HEIGHT = 220
_PAD = 48
_MAX_EVENTS = 2_000
_LINEAGE_DEPTH = 3
"""Enough for version, run, dataset version; each day's version points to the one before."""
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:70rem}
table{border-collapse:collapse;font-size:.85rem}
td,th{padding:.2rem .5rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
pre{background:#f6f6f6;padding:.8rem;overflow-x:auto}
.alert td{color:#b00020}.training td{color:#1b5fa8}.muted{color:#666}
"""
_COLOURS = ("#1b5fa8", "#b00020", "#1b7f3b", "#8a5a00")
Series = tuple[str, "Sequence[float | None]"]
"""A named line of a chart: one value (or none) per day."""


def write_summary(
    workspace: Workspace, data: DemoData, days: list[Day], windows: Sequence[WindowResult]
) -> Path:
    """Write ``demo-<deployment>.html`` into the project folder; its path."""
    name = data.spec.model
    path = workspace.settings.home / f"demo-{name}.html"
    events = workspace.events(limit=_MAX_EVENTS)
    metric = "rmse" if data.task == "regression" else "accuracy"
    labels = [str(day.day.date()) for day in days]
    marks = _marks(events, labels)
    monitored = {str(w.window_start.date()): w.values for w in windows}

    def series(metric: str) -> list[float | None]:
        return [monitored.get(label, {}).get(metric) for label in labels]

    body = [
        f"<h1>mlcycle demo: {escape(name)}</h1>",
        f"<p>{_overview(data, days)}</p>",
        f"<h2>Production's daily {metric} on the replayed days</h2>",
        line_chart(labels, [(f"served {metric}", [d.metric for d in days])], marks=marks),
        (
            "<p class='muted'>Against the true values, which arrived a day later as labels. "
            "Dashed lines: alerts fired (red) and versions promoted (blue).</p>"
        ),
        "<h2>The monitors, per daily window</h2>",
        line_chart(labels, [("drift share", series("drift_share"))], marks=marks),
        line_chart(labels, [(f"monitored {metric}", series(metric))], marks=marks),
        (
            "<p class='muted'>From <code>ws.monitor.run</code>: the share of monitored inputs "
            f"that drifted from the training data, and the {metric} on the labelled "
            "predictions of each day. The alert rules read these values.</p>"
        ),
        "<h2>Rows served per day</h2>",
        line_chart(labels, [("rows", [float(d.rows) for d in days])]),
        "<h2>Days</h2>",
        _days_table(days, metric),
        f"<h2>Lineage of {escape(name)}@production</h2>",
        f"<pre>{escape(_lineage(workspace, name))}</pre>",
        "<h2>Events</h2>",
        _events_table(events),
    ]
    title = f"mlcycle demo: {name}"
    path.write_text(
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"{''.join(body)}</body></html>",
        encoding="utf-8",
    )
    return path


def _overview(data: DemoData, days: list[Day]) -> str:
    spec = data.spec
    time = f"column {spec.time}" if spec.time else "row order"
    return escape(
        f"{spec.path.name}: {data.task} of '{spec.target}' from {len(data.features)} inputs; "
        f"time from {time}. Trained on {len(data.initial):,} rows before "
        f"{data.start.date()}, then {sum(d.rows for d in days):,} rows replayed over "
        f"{len(days)} simulated days."
    )


def _lineage(workspace: Workspace, name: str) -> str:
    from mlcycle.errors import NotFound

    try:
        tree = workspace.lineage(f"models:/{name}@production", max_depth=_LINEAGE_DEPTH)
        return "\n".join(tree.lines())
    except NotFound:
        return "no version is in production"


def _marks(events: list[Event], labels: list[str]) -> list[tuple[int, str]]:
    """Day positions of fired alerts (red) and promotions (blue) for the charts."""
    where = {label: index for index, label in enumerate(labels)}
    marks = []
    for event in events:
        colour = {"alert.fired": _COLOURS[1], "model.alias_moved": _COLOURS[0]}.get(event.type)
        day = str(event.time.date())
        if colour is not None and day in where:
            marks.append((where[day], colour))
    return marks


def line_chart(
    labels: Sequence[str], series: Sequence[Series], *, marks: Sequence[tuple[int, str]] = ()
) -> str:
    """An inline SVG line chart: one line per series over the labelled days."""
    values = [v for _, line in series for v in line if v is not None and math.isfinite(v)]
    if not labels or not values:
        return "<p class='muted'>no data</p>"
    low, high = min(0.0, *values), max(values)
    span = (high - low) or 1.0
    step = (_WIDTH - 2 * _PAD) / max(len(labels) - 1, 1)

    def x(index: int) -> float:
        return _PAD + index * step

    def y(value: float) -> float:
        return _HEIGHT - _PAD / 2 - (value - low) / span * (_HEIGHT - _PAD)

    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{_WIDTH}' height='{_HEIGHT + 20}'>",
        f"<text x='4' y='{y(high) + 4:.1f}' font-size='11'>{high:.3g}</text>",
        f"<text x='4' y='{y(low) + 4:.1f}' font-size='11'>{low:.3g}</text>",
        f"<text x='{_PAD}' y='{_HEIGHT + 14}' font-size='11'>{escape(labels[0])}</text>",
        (
            f"<text x='{_WIDTH - _PAD}' y='{_HEIGHT + 14}' font-size='11' text-anchor='end'>"
            f"{escape(labels[-1])}</text>"
        ),
    ]
    for index, colour in marks:
        parts.append(
            f"<line x1='{x(index):.1f}' y1='{y(high):.1f}' x2='{x(index):.1f}' "
            f"y2='{y(low):.1f}' stroke='{colour}' stroke-dasharray='3 3'/>"
        )
    for number, (name, line) in enumerate(series):
        colour = _COLOURS[number % len(_COLOURS)]
        points = " ".join(
            f"{x(i):.1f},{y(v):.1f}"
            for i, v in enumerate(line)
            if v is not None and math.isfinite(v)
        )
        parts.append(
            f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{points}'>"
            f"<title>{escape(name)}</title></polyline>"
            f"<text x='{_WIDTH - _PAD}' y='{14 + 14 * number}' font-size='11' "
            f"text-anchor='end' fill='{colour}'>{escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _days_table(days: list[Day], metric: str) -> str:
    head = (
        f"<tr><th>day</th><th>rows</th><th>requests</th><th>served by</th><th>{metric}</th>"
        "<th>labels sent</th><th>what happened</th></tr>"
    )
    rows = "".join(
        f"<tr><td>{day.day.date()}</td><td>{day.rows:,}</td><td>{day.requests}</td>"
        f"<td>{', '.join(map(str, day.versions))}</td><td>{day.metric:.4g}</td>"
        f"<td>{day.labelled:,}</td><td>{escape('; '.join(day.notes))}</td></tr>"
        for day in days
    )
    return f"<table>{head}{rows}</table>"


def _events_table(events: list[Event]) -> str:
    head = "<tr><th>time (simulated)</th><th>event</th><th>subject</th><th>details</th></tr>"
    rows = "".join(
        f"<tr class='{event.type.split('.')[0]}'><td>{event.time:%Y-%m-%d %H:%M}</td>"
        f"<td>{escape(event.type)}</td><td>{escape(event.subject)}</td>"
        f"<td>{escape(_details(event))}</td></tr>"
        for event in events
    )
    return f"<table>{head}{rows}</table>"


def _details(event: Event) -> str:
    payload = event.payload
    for key in ("why", "reason", "message", "summary"):
        if isinstance(payload.get(key), str):
            return str(payload[key])
    shown = ", ".join(
        f"{k}={v}" for k, v in payload.items() if isinstance(v, (str, int, float)) and k != "id"
    )
    return shown[:300]
