"""The HTML report stands alone: every column charted and tabled, nothing fetched."""

from __future__ import annotations

import re

import pandas as pd

from mlcycle.monitor import drift


def test_the_page_charts_and_tables_every_column_offline() -> None:
    reference = pd.DataFrame({"x": [float(i) for i in range(200)], "c": ["a", "b"] * 100})
    current = pd.DataFrame({"x": [float(i) + 80 for i in range(200)], "c": ["a", "<b>"] * 100})
    page = drift(reference, current).to_html(title="Bikes & drift")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Bikes &amp; drift</title>" in page
    assert not re.search(r"(src|href)=['\"]?https?:", page)  # no remote resources
    assert "<script" not in page
    assert page.count("<rect ") == 2
    assert "&#x27;&lt;b&gt;&#x27;" in page  # labels are escaped
    assert ">inf</text>" in page  # an unseen category: the bar is capped, its label says inf
    assert "2 of 2 columns drifted" in page
