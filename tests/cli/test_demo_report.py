"""The demo's pieces on their own: the summary page's charts, and a server that will not start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlcycle import Workspace
from mlcycle.cli._demo_data import DemoSpec, prepare
from mlcycle.cli._demo_report import line_chart, write_summary
from mlcycle.cli._demo_serving import DemoServer
from mlcycle.errors import MlcycleError
from mlcycle.settings import Settings


def test_a_chart_draws_one_line_per_series_and_skips_gaps() -> None:
    svg = line_chart(
        ["2011-04-01", "2011-04-02", "2011-04-03"],
        [("rmse", [40.0, None, 60.0]), ("drift", [0.5, 0.75, float("nan")])],
        marks=[(1, "#b00020")],
    )
    assert svg.startswith("<svg")
    assert svg.count("<polyline") == 2
    assert "stroke-dasharray" in svg  # the mark
    rmse = svg.split("<polyline")[1].split("points='")[1].split("'")[0]
    assert len(rmse.split()) == 2  # the missing day is skipped, not drawn at zero
    assert "2011-04-01" in svg
    assert "2011-04-03" in svg


def test_a_chart_without_values_says_so() -> None:
    assert "no data" in line_chart([], [])
    assert "no data" in line_chart(["2011-04-01"], [("rmse", [None])])


def test_a_summary_before_any_model_is_served_is_still_written(
    project_settings: Settings, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "table.csv"
    pd.DataFrame({"x": rng.normal(size=300), "y": rng.normal(size=300)}).to_csv(path)
    data = prepare(DemoSpec(path=path, target="y", days=5, dataset="t", model="t-y"))
    with Workspace.open(project_settings) as workspace:
        page = write_summary(workspace, data, [], []).read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "no version is in production" in page
    assert "<script" not in page  # offline: nothing runs, nothing is fetched
    assert "regression of &#x27;y&#x27;" in page


def test_a_server_that_exits_before_it_is_ready_is_reported(project_settings: Settings) -> None:
    with pytest.raises(MlcycleError, match="exited with code 1 before it was ready") as caught:
        DemoServer(project_settings, "nothing-deployed").__enter__()
    assert "nothing-deployed" in str(caught.value)  # the server's own error, from its log
