"""A drift report as one self-contained HTML page: inline CSS and SVG, nothing fetched.

``line_chart`` draws series over time the same way (inline SVG), for the
monitoring report's performance, drift share and latency plots.

The chart puts every column on one scale, where 1 is the column's threshold:
a distance divided by its threshold, or for p-value tests ``log(p) /
log(threshold)``, so a bar past the dashed line is a column that drifted
whatever its test. Bars are capped at 3 so one extreme column leaves the rest
readable; the table gives the exact numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlcycle.monitor._report import ColumnDrift, DriftReport

__all__ = ["STYLE", "line_chart", "render_drift_html", "score"]

_CAP = 3.0
_ROW = 22
_LABEL = 180
_WIDTH = 420
STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;font-size:.9rem}
td,th{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.drifted td:first-child{color:#b00020;font-weight:600}
.summary{font-size:1.1rem;margin:.5rem 0 1.5rem}.bad{color:#b00020}.good{color:#1b7f3b}
"""


def score(column: ColumnDrift) -> float | None:
    """The column's place on the chart's scale: 1 at its threshold, more means more drift."""
    if column.p_value is not None:
        if column.p_value <= 0:
            return math.inf
        return math.log(column.p_value) / math.log(column.threshold)
    if column.statistic is None:
        return None
    return column.statistic / column.threshold if column.threshold > 0 else math.inf


def render_drift_html(report: DriftReport, *, title: str) -> str:
    """The page: a summary line, the chart, and the table of every column."""
    verdict = (
        "<span class='bad'>dataset drift</span>"
        if report.drifted
        else "<span class='good'>no dataset drift</span>"
    )
    summary = (
        f"{verdict}: {len(report.drifted_columns)} of {len(report.columns)} columns drifted "
        f"({report.drifted_share:.0%}; the dataset drifts at {report.drift_share:.0%}). "
        f"Reference: {escape(report.reference)}, {report.reference_rows:,} rows; "
        f"current: {report.current_rows:,} rows."
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1><p class='summary'>{summary}</p>"
        f"<h2>Drift per column</h2>{_chart(report)}"
        "<p>Scale: 1 is each column's threshold (a distance divided by its threshold; for "
        "p-value tests log(p) / log(threshold)); bars past the dashed line drifted.</p>"
        f"<h2>Columns</h2>{_table(report)}</body></html>"
    )


def _chart(report: DriftReport) -> str:
    columns = list(report.columns.values())
    height = _ROW * len(columns) + 30
    scale = _WIDTH / _CAP
    parts = [
        (
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{_LABEL + _WIDTH + 80}' "
            f"height='{height}' role='img' aria-label='drift per column'>"
        )
    ]
    for row, column in enumerate(columns):
        y = row * _ROW + 4
        value = score(column)
        shown = _CAP if value is None or value > _CAP else value
        colour = "#b00020" if column.drifted else "#4a7bb7"
        faded = " opacity='0.35'" if value is None else ""
        label = "no data" if value is None else ("inf" if math.isinf(value) else f"{value:.2f}")
        parts.append(
            f"<text x='{_LABEL - 6}' y='{y + 14}' text-anchor='end' font-size='12'>"
            f"{escape(column.column)}</text>"
            f"<rect x='{_LABEL}' y='{y}' width='{max(shown * scale, 1):.1f}' height='16' "
            f"fill='{colour}'{faded}>"
            f"<title>{escape(column.test)}: {label}</title></rect>"
            f"<text x='{_LABEL + shown * scale + 4:.1f}' y='{y + 13}' font-size='11'>{label}</text>"
        )
    line_x = _LABEL + scale
    parts.append(
        f"<line x1='{line_x:.1f}' y1='0' x2='{line_x:.1f}' y2='{height - 24}' "
        "stroke='#222' stroke-dasharray='4 3'/>"
        f"<text x='{line_x:.1f}' y='{height - 8}' text-anchor='middle' font-size='11'>"
        "threshold</text></svg>"
    )
    return "".join(parts)


def _table(report: DriftReport) -> str:
    head = (
        "<tr><th>column</th><th>kind</th><th>test</th><th>statistic</th><th>p-value</th>"
        "<th>threshold</th><th>drifted</th><th>reference values</th><th>current values</th>"
        "<th>current missing</th><th>note</th></tr>"
    )
    rows = "".join(
        f"<tr class='{'drifted' if c.drifted else ''}'><td>{escape(c.column)}</td>"
        f"<td>{c.kind}</td><td>{c.test}</td><td class='n'>{_number(c.statistic)}</td>"
        f"<td class='n'>{_number(c.p_value)}</td><td class='n'>{c.threshold:g}</td>"
        f"<td>{'yes' if c.drifted else 'no'}</td><td class='n'>{c.reference_count:,}"
        f"{' (sample)' if c.sampled else ''}</td><td class='n'>{c.current_count:,}</td>"
        f"<td class='n'>{c.current_missing:,}</td><td>{escape(c.note or '')}</td></tr>"
        for c in report.columns.values()
    )
    return f"<table>{head}{rows}</table>"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


_PALETTE = ("#4a7bb7", "#b00020", "#1b7f3b", "#8a5a00", "#6a3d9a", "#444444")
_PLOT_W, _PLOT_H, _PAD = 640, 200, 48


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float | None]]],
    *,
    label: str,
    x_label: Callable[[float], str] | None = None,
) -> str:
    """Series of ``(x, y)`` points as lines in one inline SVG; ``None`` breaks a line.

    x is usually a window's end in epoch seconds, and the axis shows the first
    and last as dates; ``x_label`` writes them otherwise (ages in days). An
    empty chart says there is no data.
    """
    shown = x_label or _day
    points = [(x, y) for values in series.values() for x, y in values if _finite(y)]
    if not points:
        return f"<p>No values for {escape(label)} yet.</p>"
    xs, ys = [p[0] for p in points], [float(p[1]) for p in points]  # type: ignore[arg-type]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, *ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def at(x: float, y: float) -> str:
        px = _PAD + (x - x0) / (x1 - x0) * (_PLOT_W - 2 * _PAD)
        py = _PLOT_H - _PAD / 2 - (y - y0) / (y1 - y0) * (_PLOT_H - _PAD)
        return f"{px:.1f},{py:.1f}"

    svg = (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{_PLOT_W + 160}' height='{_PLOT_H}' "
        f"role='img' aria-label='{escape(label)}'>"
    )
    last = (
        f"<text x='{_PLOT_W - _PAD}' y='{_PLOT_H - 4}' font-size='11' text-anchor='end'>"
        f"{escape(shown(x1))}</text>"
    )
    parts = [
        svg,
        f"<text x='4' y='14' font-size='11'>{y1:.4g}</text>",
        f"<text x='4' y='{_PLOT_H - _PAD / 2:.0f}' font-size='11'>{y0:.4g}</text>",
        f"<text x='{_PAD}' y='{_PLOT_H - 4}' font-size='11'>{escape(shown(x0))}</text>",
        last,
    ]
    for index, (name, values) in enumerate(series.items()):
        colour = _PALETTE[index % len(_PALETTE)]
        for run in _runs(values):
            path = " ".join(at(x, y) for x, y in run)
            parts.append(
                f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{path}'/>"
                if len(run) > 1
                else f"<circle cx='{path.split(',')[0]}' cy='{path.split(',')[1]}' r='3' "
                f"fill='{colour}'/>"
            )
        parts.append(
            f"<text x='{_PLOT_W + 4}' y='{20 + 16 * index}' font-size='12' fill='{colour}'>"
            f"{escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _runs(values: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in values:
        if _finite(y):
            runs[-1].append((x, float(y)))  # type: ignore[arg-type]
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _day(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M")
