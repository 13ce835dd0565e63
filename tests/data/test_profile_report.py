"""The offline HTML profile report: every column, inline SVG bars, nothing from a network."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pyarrow as pa
import pyarrow.csv as pacsv

from mlcycle.data import profile_table, render_profile_html
from mlcycle.datasets import BIKE_SHARING_HOURLY


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.sections: list[str] = []
        self.attributes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(value or "" for _, value in attrs)
        if tag == "section":
            self.sections.append(dict(attrs).get("id") or "")


def test_bike_report_shows_every_column_offline() -> None:
    table = pacsv.read_csv(BIKE_SHARING_HOURLY)
    page = render_profile_html(profile_table(table), title="Bike <hourly>")
    parsed = _Collector()
    parsed.feed(page)
    assert parsed.sections == [f"col-{name}" for name in table.schema.names]
    assert "<title>Bike &lt;hourly&gt;</title>" in page
    assert not re.search(r"https?://", page)
    assert "script" not in parsed.tags
    assert not any(a.startswith("//") for a in parsed.attributes)
    assert parsed.tags.count("svg") == table.num_columns - 1  # all but the date column have bars
    assert parsed.tags.count("rect") >= 20


def test_report_escapes_names_and_handles_categoricals_and_empty_tables() -> None:
    table = pa.table({"<b>x</b>": ["é", "é", "😀", None], "n": pa.array([None] * 4, pa.float64())})
    page = render_profile_html(profile_table(table), title="t")
    assert "<b>x</b>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "😀" in page
    empty = render_profile_html(profile_table(table.slice(0, 0)), title="empty")
    assert "0 rows, 2 columns" in empty
