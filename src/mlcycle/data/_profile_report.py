"""A dataset profile as one self-contained HTML page that works offline.

Inline CSS and inline SVG bars only: no script, no font or stylesheet from a
CDN, so the report opens from a file, an e-mail attachment or an air-gapped
machine and shows the same thing.
"""

from __future__ import annotations

from html import escape

from mlcycle.data._profile import ColumnProfile, DatasetProfile, Histogram

__all__ = ["render_profile_html"]

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin:0 0 .4em}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:right}
th{text-align:left;color:#555;font-weight:normal}
.col{border:1px solid #ddd;border-radius:6px;padding:1em;margin:1em 0;display:flex;gap:2em;
flex-wrap:wrap}
.kind{color:#777;font-size:.85em}svg rect{fill:#4a7ab5}svg rect.bar:hover{fill:#23466e}
.summary td:first-child{text-align:left}
"""
_WIDTH = 360
_HEIGHT = 120


def render_profile_html(profile: DatasetProfile, *, title: str = "Dataset profile") -> str:
    """The whole report as one HTML string (write it to a ``.html`` file to view it).

    >>> import pyarrow as pa
    >>> from mlcycle.data import profile_table
    >>> page = render_profile_html(profile_table(pa.table({"x": [1, 2, 3]})), title="t")
    >>> page.startswith("<!DOCTYPE html>") and "<svg" in page
    True
    """
    overview = "".join(
        f"<tr><td>{escape(c.name)}</td><td>{escape(c.kind)}</td><td>{c.count:,}</td>"
        f"<td>{c.missing:,}</td><td>{_fmt(c.distinct)}</td></tr>"
        for c in profile.columns
    )
    sections = "".join(_column_section(column, profile.rows) for column in profile.columns)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1><p>{profile.rows:,} rows, {len(profile.columns)} columns</p>"
        "<table class='summary'><tr><th>column</th><th>kind</th><th>count</th><th>missing</th>"
        f"<th>distinct</th></tr>{overview}</table>{sections}</body></html>\n"
    )


def _column_section(column: ColumnProfile, rows: int) -> str:
    stats: list[tuple[str, object]] = [
        ("type", column.type),
        ("count", column.count),
        ("missing", f"{column.missing:,} ({column.missing / rows:.1%})" if rows else 0),
        ("distinct", column.distinct),
    ]
    if column.kind == "numeric":
        stats += [("NaN", column.nan_count), ("inf", column.inf_count)]
    stats += [("min", column.min), ("max", column.max), ("mean", column.mean)]
    stats += [("std", column.std), *column.quantiles.items()]
    rows_html = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(_fmt(v))}</td></tr>"
        for k, v in stats
        if v is not None
    )
    chart = ""
    if column.histogram is not None:
        chart = _histogram_svg(column.histogram)
    elif column.top_values:
        chart = _bars_svg(column.top_values)
    return (
        f"<section class='col' id='col-{escape(column.name, quote=True)}'><div>"
        f"<h2>{escape(column.name)} <span class='kind'>{escape(column.kind)}</span></h2>"
        f"<table>{rows_html}</table></div><div>{chart}</div></section>"
    )


def _histogram_svg(histogram: Histogram) -> str:
    peak = max(histogram.counts) or 1
    width = _WIDTH / len(histogram.counts)
    bars = []
    for i, count in enumerate(histogram.counts):
        height = _HEIGHT * count / peak
        label = f"[{_fmt(histogram.edges[i])}, {_fmt(histogram.edges[i + 1])}): {count:,}"
        bars.append(
            f"<rect class='bar' x='{i * width:.1f}' y='{_HEIGHT - height:.1f}' "
            f"width='{max(width - 1, 1):.1f}' height='{height:.1f}'>"
            f"<title>{escape(label)}</title></rect>"
        )
    low, high = _fmt(histogram.edges[0]), _fmt(histogram.edges[-1])
    return (
        f"<svg width='{_WIDTH}' height='{_HEIGHT + 16}' role='img'>{''.join(bars)}"
        f"<text x='0' y='{_HEIGHT + 13}' font-size='11'>{escape(low)}</text>"
        f"<text x='{_WIDTH}' y='{_HEIGHT + 13}' font-size='11' text-anchor='end'>"
        f"{escape(high)}</text></svg>"
    )


def _bars_svg(top_values: list[tuple[str, int]]) -> str:
    peak = max(count for _, count in top_values) or 1
    row = 16
    label_width = 120
    bars = []
    for i, (value, count) in enumerate(top_values):
        length = (_WIDTH - label_width - 60) * count / peak
        shown = value if len(value) <= 18 else value[:17] + "…"
        bars.append(
            f"<text x='{label_width - 4}' y='{i * row + 12}' font-size='11' text-anchor='end'>"
            f"{escape(shown)}</text><rect class='bar' x='{label_width}' y='{i * row + 2}' "
            f"width='{max(length, 1):.1f}' height='{row - 4}'><title>{escape(value)}: "
            f"{count:,}</title></rect><text x='{label_width + length + 4:.1f}' "
            f"y='{i * row + 12}' font-size='11'>{count:,}</text>"
        )
    return (
        f"<svg width='{_WIDTH}' height='{len(top_values) * row}' role='img'>{''.join(bars)}</svg>"
    )


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
