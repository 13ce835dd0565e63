"""A drift report as one self-contained HTML page: inline CSS and SVG, nothing fetched.

The chart puts every column on one scale, where 1 is the column's threshold:
a distance divided by its threshold, or for p-value tests ``log(p) /
log(threshold)``, so a bar past the dashed line is a column that drifted
whatever its test. Bars are capped at 3 so one extreme column leaves the rest
readable; the table gives the exact numbers.
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlcycle.monitor._report import ColumnDrift, DriftReport

__all__ = ["render_drift_html", "score"]

_CAP = 3.0
_ROW = 22
_LABEL = 180
_WIDTH = 420
_STYLE = """
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
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
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
