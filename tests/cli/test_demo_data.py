"""``mlcycle demo --data FILE --target COL``: any CSV, its task chosen, bad input refused early."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import Result

from mlcycle import Workspace
from mlcycle.cli._demo_data import (
    MIN_ROWS,
    SYNTHETIC_START,
    TIME,
    DemoSpec,
    detect_task,
    prepare,
)
from mlcycle.errors import ValidationFailed
from mlcycle.settings import load_settings

Invoke = Callable[..., Result]
ADULT = Path(__file__).parents[1] / "data" / "adult.csv"


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (["<=50K", ">50K", "<=50K"], "classification"),
        ([True, False, True], "classification"),
        ([0, 1, 1, 0], "classification"),
        ([1.0, 2.0, 3.0, 2.0], "classification"),  # whole numbers, few values
        (list(range(11)), "regression"),  # whole numbers, more than 10 values
        ([0.5, 1.5, 0.5], "regression"),
    ],
)
def test_the_task_follows_from_the_target(values: list[object], task: str) -> None:
    assert detect_task(pd.Series(values), column="y") == task


def _csv(tmp_path: Path, rows: int = 400, **columns: object) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=rows), "y": rng.normal(size=rows), **columns})
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return path


def test_without_time_row_order_is_time(tmp_path: Path) -> None:
    data = prepare(DemoSpec(path=_csv(tmp_path, rows=1_000), target="y", days=10, dataset="t"))
    assert data.task == "regression"
    assert data.features == ["x"]
    assert data.start == pd.Timestamp(SYNTHETIC_START)
    assert len(data.initial) == 300  # the first 30 % of the rows train
    assert len(data.days) == 10
    assert [len(data.day(day)) for day in data.days] == [70] * 10  # the rest, evenly
    assert data.frame[TIME].is_monotonic_increasing


def test_a_time_column_orders_the_rows_and_cuts_the_days(tmp_path: Path) -> None:
    stamps = pd.date_range("2020-01-01", periods=400, freq="6h").astype(str).tolist()
    path = _csv(tmp_path, when=list(reversed(stamps)))
    data = prepare(DemoSpec(path=path, target="y", time="when", days=5, dataset="t"))
    assert data.features == ["x"]  # the time column is not an input
    assert data.frame[TIME].is_monotonic_increasing
    assert data.start == pd.Timestamp("2020-01-31", tz="UTC")  # after 30 % of the rows
    assert [str(day.date()) for day in data.days] == [f"2020-01-{d}" for d in range(31, 32)] + [
        f"2020-02-0{d}" for d in range(1, 5)
    ]
    assert all(len(data.day(day)) == 4 for day in data.days)


def _refused(invoke: Invoke, tmp_path: Path, *args: str) -> Result:
    """Run the demo in an empty folder; it must fail and leave the folder empty."""
    folder = tmp_path / "empty"
    folder.mkdir()
    result = invoke("--home", str(folder), "demo", *args)
    assert result.exit_code == 1, result.output
    assert list(folder.iterdir()) == []  # nothing half-written
    return result


def test_a_missing_file_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    result = _refused(invoke, tmp_path, "--data", str(tmp_path / "nope.csv"), "--target", "y")
    assert "error: no file at" in result.stderr
    assert "give the path of a CSV file with --data FILE" in result.stderr


def test_a_target_that_is_not_a_column_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    result = _refused(invoke, tmp_path, "--data", str(_csv(tmp_path)), "--target", "price")
    assert "--target 'price' is not a column of" in result.stderr
    assert "its columns are: x, y" in result.stderr


def test_a_time_column_that_does_not_parse_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    path = _csv(tmp_path, when=["2020-01-01"] * 399 + ["someday"])
    result = _refused(invoke, tmp_path, "--data", str(path), "--target", "y", "--time", "when")
    assert "--time 'when' does not parse as dates or times" in result.stderr
    assert "'someday'" in result.stderr
    assert "leave --time out to use row order as time" in result.stderr


def test_dropping_an_unknown_column_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    path = str(_csv(tmp_path))
    result = _refused(invoke, tmp_path, "--data", path, "--target", "y", "--drop", "leak")
    assert "--drop leak: not a column of" in result.stderr


def test_a_target_with_one_class_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    path = str(_csv(tmp_path, label=["yes"] * 400))
    result = _refused(invoke, tmp_path, "--data", path, "--target", "label")
    assert "the target 'label' has one value only ('yes')" in result.stderr
    assert "Choose a target column whose values vary" in result.stderr


def test_too_few_rows_are_refused(invoke: Invoke, tmp_path: Path) -> None:
    path = str(_csv(tmp_path, rows=MIN_ROWS - 1))
    result = _refused(invoke, tmp_path, "--data", path, "--target", "y")
    assert f"has {MIN_ROWS - 1} rows with a value of 'y'" in result.stderr
    assert f"the demo needs at least {MIN_ROWS}" in result.stderr


def test_a_file_that_is_not_csv_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    result = _refused(invoke, tmp_path, "--data", str(path), "--target", "y")
    assert "does not read as a CSV file" in result.stderr


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--target", "y"], "--target, --time and --drop describe a file: give it with --data"),
        (["--data", "t.csv"], "needs --target COL"),
    ],
)
def test_options_that_need_each_other(
    invoke: Invoke, tmp_path: Path, args: list[str], problem: str
) -> None:
    assert problem in _refused(invoke, tmp_path, *args).stderr


def test_the_training_period_needs_two_classes(tmp_path: Path) -> None:
    labels = ["a"] * 300 + ["a", "b"] * 50
    path = _csv(tmp_path, label=labels)
    with pytest.raises(ValidationFailed, match="holds one class of 'label' only"):
        prepare(DemoSpec(path=path, target="label", days=10, dataset="t"))


@pytest.mark.slow
def test_the_whole_loop_on_adult_as_a_classifier(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["--data", str(ADULT), "--target", "income", "--drop", "split", "--days", "6"]
    result = invoke("demo", *args)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "registered dataset adult/1: 1,800 rows before 2024-01-01" in out
    assert "task: classification of 'income'" in out
    assert "promoted adult-income/" in out
    assert "replaying 6 days from 2024-01-01" in out
    assert "served 4,200 rows over 6 days; production's daily accuracy" in out
    with Workspace.open(load_settings(tmp_path)) as workspace:
        production = workspace.registry.get("adult-income@production")
        assert production.tags["task"] == "classification"
        labelled = workspace.feedback.labelled("adult-income").to_pylist()
        assert len(labelled) == 4_200  # every replayed row, through the real server
        assert {row["label"] for row in labelled} == {"<=50K", ">50K"}  # every one labelled
        assert {row["time"].date().isoformat() for row in labelled} == {
            f"2024-01-0{day}" for day in range(1, 7)
        }
        # The labelled rows joined the dataset a day after they were served.
        assert workspace.data.get("adult").rows == 1_800 + 4_200
        assert "split" in workspace.data.get("adult").columns  # dropped from the inputs only
        assert "split" not in [spec["name"] for spec in production.signature["inputs"]]
        # The monitors scored each day as a classifier's; row order has no drift to find.
        results = workspace.monitor.results("adult-income", metrics=["accuracy", "drift_share"])
        assert results["window_start"].nunique() == 6
        assert set(results["metric"]) == {"accuracy", "drift_share"}
    assert "monitored 6 daily windows of adult-income" in out
    assert "[training.adult-income]" in (tmp_path / "mlcycle.toml").read_text()
    assert (tmp_path / "demo-adult-income.html").is_file()
    again = invoke("demo", *args)
    assert again.exit_code == 1
    assert "already has deployment 'adult-income' from an earlier `mlcycle demo`" in again.stderr


def test_a_time_column_with_gaps_or_missing_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    path = str(_csv(tmp_path, when=["2020-01-01"] * 399 + [None]))
    gaps = _refused(invoke, tmp_path, "--data", path, "--target", "y", "--time", "when")
    assert "--time 'when' has 1 empty value(s); every row needs a time" in gaps.stderr
    (tmp_path / "empty").rmdir()
    missing = _refused(invoke, tmp_path, "--data", path, "--target", "y", "--time", "day")
    assert "--time 'day' is not a column of" in missing.stderr


def test_a_time_column_on_one_day_has_no_later_days(tmp_path: Path) -> None:
    path = _csv(tmp_path, when=["2020-01-01 08:00"] * 400)
    with pytest.raises(ValidationFailed, match="needs at least 2"):
        prepare(DemoSpec(path=path, target="y", time="when", days=5, dataset="t"))


def test_a_column_with_a_name_the_demo_uses_is_refused(invoke: Invoke, tmp_path: Path) -> None:
    path = str(_csv(tmp_path, demo_part=["a"] * 400))
    result = _refused(invoke, tmp_path, "--data", path, "--target", "y")
    assert "has a column 'demo_part', a name the demo gives a column of its own" in result.stderr
