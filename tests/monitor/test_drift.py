"""``drift()`` on frames: decisions and p-values as SciPy's, options, and every bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from scipy import stats

from mlcycle.errors import ValidationFailed
from mlcycle.monitor import DriftReport, ReferenceStats, drift


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A reference and a window of 30,000 rows each; ``b`` and ``city`` drift."""
    rng = np.random.default_rng(7)
    n = 30_000
    reference = pd.DataFrame(
        {
            "a": rng.normal(0, 1, n),
            "b": rng.normal(0, 1, n),
            "hour": rng.integers(0, 24, n),
            "city": rng.choice(["oslo", "rome", "lima"], n, p=[0.5, 0.3, 0.2]),
        }
    )
    current = pd.DataFrame(
        {
            "a": rng.normal(0, 1, n),
            "b": rng.normal(0.2, 1, n),
            "hour": rng.integers(0, 24, n),
            "city": rng.choice(["oslo", "rome", "lima"], n, p=[0.3, 0.3, 0.4]),
        }
    )
    return reference, current


def scipy_chi2(reference: pd.Series, current: pd.Series) -> float:
    """Evidently's chi-squared: window counts against reference counts scaled to its size."""
    keys = sorted(set(reference) | set(current))
    ref_counts, cur_counts = reference.value_counts(), current.value_counts()
    expected = [ref_counts.get(k, 0) * len(current) / len(reference) for k in keys]
    return float(stats.chisquare([cur_counts.get(k, 0) for k in keys], expected).pvalue)


def test_p_values_and_decisions_agree_with_scipy(frames: tuple[pd.DataFrame, ...]) -> None:
    reference, current = frames
    report = drift(reference, current)
    for name in ("a", "b", "hour"):
        expected = stats.ks_2samp(reference[name], current[name])
        column = report.columns[name]
        assert (column.test, column.kind) == ("ks", "numeric")
        assert column.statistic == pytest.approx(expected.statistic, abs=1e-12)
        assert column.p_value == pytest.approx(expected.pvalue, abs=1e-6)
        assert column.drifted == (expected.pvalue <= 0.05)
    city = report.columns["city"]
    assert city.p_value == pytest.approx(scipy_chi2(reference["city"], current["city"]), abs=1e-6)
    assert report.drifted_columns == ["b", "city"]
    assert report.drifted_share == 0.5
    assert report.drifted  # 0.5 >= the default share of 0.5, as Evidently decides


def test_pandas_polars_and_arrow_frames_give_the_same_report(
    frames: tuple[pd.DataFrame, ...],
) -> None:
    reference, current = frames
    from_pandas = drift(reference, current).to_dict()
    from_polars = drift(pl.from_pandas(reference), pl.from_pandas(current)).to_dict()
    from_arrow = drift(pa.Table.from_pandas(reference), pa.Table.from_pandas(current)).to_dict()
    assert from_pandas == from_polars == from_arrow


def test_a_prepared_reference_gives_the_same_report_as_the_frame(
    frames: tuple[pd.DataFrame, ...],
) -> None:
    reference, current = frames
    prepared = ReferenceStats.from_frame(reference)
    assert drift(prepared, current).to_dict() == drift(reference, current).to_dict()


def test_tests_thresholds_and_categories_are_chosen_per_column(
    frames: tuple[pd.DataFrame, ...],
) -> None:
    reference, current = frames
    report = drift(
        reference,
        current,
        numeric_test="wasserstein",
        categorical_test="psi",
        tests={"a": "jensenshannon"},
        thresholds={"b": 0.5},
        categorical=["hour"],
    )
    assert {n: c.test for n, c in report.columns.items()} == {
        "a": "jensenshannon",
        "b": "wasserstein",
        "hour": "psi",
        "city": "psi",
    }
    b = report.columns["b"]
    expected = stats.wasserstein_distance(reference["b"], current["b"]) / np.std(reference["b"])
    assert b.statistic == pytest.approx(expected, rel=1e-9)
    assert (b.threshold, b.drifted) == (0.5, False)  # ~0.2 std moved: drifted at 0.1, not 0.5
    assert report.columns["hour"].kind == "categorical"
    assert report.columns["a"].threshold == 0.1
    assert report.columns["a"].p_value is None


def test_one_threshold_for_every_column_and_the_share_decide_the_dataset(
    frames: tuple[pd.DataFrame, ...],
) -> None:
    reference, current = frames
    strict = drift(reference, current, threshold=1e-12, drift_share=0.25)
    assert strict.drifted_columns == ["b", "city"]  # p-values far below 1e-12
    assert {c.threshold for c in strict.columns.values()} == {1e-12}
    assert strict.drifted
    assert not drift(reference, current, drift_share=0.75).drifted


def test_the_report_renders_as_frame_dict_json_and_text(frames: tuple[pd.DataFrame, ...]) -> None:
    reference, current = frames
    report = drift(reference, current, columns=["a", "city"])
    frame = report.to_frame()
    assert list(frame.index) == ["a", "city"]
    assert {"test", "statistic", "p_value", "threshold", "drifted"} <= set(frame.columns)
    data = json.loads(report.to_json())
    assert data == report.to_dict()
    assert data["drifted_columns"] == ["city"]
    assert str(report) == "drifted: 1 of 2 columns drifted (50%; threshold 50%)"


def test_numbers_with_few_values_are_compared_value_by_value_for_psi() -> None:
    reference = pd.DataFrame({"code": [1, 2, 3] * 100})
    current = pd.DataFrame({"code": [1, 2, 3, 3] * 50})
    report = drift(reference, current, numeric_test="psi")
    shares_ref, shares_cur = np.array([1, 1, 1]) / 3, np.array([1, 1, 2]) / 4
    expected = float(np.sum((shares_ref - shares_cur) * np.log(shares_ref / shares_cur)))
    assert report.columns["code"].statistic == pytest.approx(expected)


# --- edge cases ---------------------------------------------------------------------------------


def test_an_empty_window_is_an_error_naming_the_fix(frames: tuple[pd.DataFrame, ...]) -> None:
    reference, current = frames
    with pytest.raises(ValidationFailed, match=r"no rows.*at least one row"):
        drift(reference, current.iloc[:0])


def test_a_feature_that_is_all_missing_in_the_window_drifted_without_a_statistic() -> None:
    reference = pd.DataFrame({"x": np.arange(100.0), "c": ["a", "b"] * 50})
    current = pd.DataFrame({"x": [np.nan, np.inf, None] * 10, "c": [None] * 30})
    report = drift(reference, current)
    x, c = report.columns["x"], report.columns["c"]
    assert (x.drifted, x.statistic, x.p_value, x.current_missing) == (True, None, None, 30)
    assert x.note == "no values in the current data: all 30 are missing"
    assert (c.drifted, c.current_count, c.current_missing) == (True, 0, 30)
    assert "no data" in report.to_html()


def test_a_reference_column_without_values_is_not_tested() -> None:
    reference = pd.DataFrame({"x": [np.nan] * 10, "y": np.arange(10.0)})
    report = drift(reference, pd.DataFrame({"x": [1.0, 2.0], "y": [1.0, 2.0]}))
    assert report.columns["x"].drifted is False
    assert report.columns["x"].note == "no values in the reference: nothing to compare with"


def test_missing_values_are_left_out_and_counted(frames: tuple[pd.DataFrame, ...]) -> None:
    reference, current = frames
    holes = current.copy()
    holes.loc[:999, "a"] = np.nan
    column = drift(reference, holes, columns=["a"]).columns["a"]
    expected = stats.ks_2samp(reference["a"], current["a"].iloc[1000:])
    assert (column.current_count, column.current_missing) == (29_000, 1000)
    assert column.p_value == pytest.approx(expected.pvalue, abs=1e-6)


def test_a_feature_missing_from_the_window_is_an_error_naming_it(
    frames: tuple[pd.DataFrame, ...],
) -> None:
    reference, current = frames
    with pytest.raises(ValidationFailed, match=r"no column\(s\) \['city'\].*columns=\[") as error:
        drift(reference, current.drop(columns=["city"]))
    assert "it has ['a', 'b', 'hour']" in str(error.value)
    assert drift(reference, current.drop(columns=["city"]), columns=["a"]).columns.keys() == {"a"}


def test_mismatched_types_are_an_error_naming_both(frames: tuple[pd.DataFrame, ...]) -> None:
    reference, current = frames
    wrong = current.assign(a=current["a"].astype(str))
    with pytest.raises(ValidationFailed, match=r"'a' is numeric in the reference .* categorical"):
        drift(reference, wrong)


def test_categories_the_reference_never_saw_drift_with_a_note() -> None:
    reference = pd.DataFrame({"c": ["a", "b"] * 500})
    current = pd.DataFrame({"c": ["a", "b", "new"] * 100})
    column = drift(reference, current).columns["c"]
    assert (column.statistic, column.p_value, column.drifted) == (math.inf, 0.0, True)
    assert column.note == "1 value(s) the reference never saw: 'new'"
    assert drift(reference, current).to_dict()["columns"][0]["statistic"] == "inf"
    js = drift(reference, current, categorical_test="jensenshannon").columns["c"]
    assert js.statistic is not None
    assert 0 < js.statistic < 1


def test_constant_columns_compare_without_errors() -> None:
    reference = pd.DataFrame({"x": [3.0] * 200, "c": ["only"] * 200})
    same = drift(reference, pd.DataFrame({"x": [3.0] * 50, "c": ["only"] * 50}))
    assert same.drifted_columns == []
    assert same.columns["c"].p_value == 1.0  # one category: nothing to compare (SciPy: NaN)
    moved = drift(
        reference, pd.DataFrame({"x": [4.0] * 50, "c": ["only"] * 50}), numeric_test="wasserstein"
    )
    assert moved.columns["x"].statistic == pytest.approx(1.0 / 0.001)  # Evidently's std floor
    assert moved.drifted_columns == ["x"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"numeric_test": "kolmogorov"}, "unknown drift test 'kolmogorov'; choose one of ks,"),
        ({"tests": {"nope": "ks"}}, r"tests= names column\(s\) \['nope'\] that are not tested"),
        ({"thresholds": {"a": 1.5}}, "threshold 1.5 for column 'a' \\(ks\\) is not a p-value"),
        ({"thresholds": {"a": -1}, "numeric_test": "psi"}, "is not a distance >= 0"),
        ({"categorical": ["zzz"]}, r"categorical= names column\(s\) \['zzz'\]"),
        ({"tests": {"city": "ks"}}, "'city' holds categories, and the 'ks' test needs numbers"),
        ({"drift_share": 0}, r"drift_share=0 must be a share in \(0, 1\]"),
        ({"columns": []}, "no columns to test"),
    ],
)
def test_bad_options_fail_before_any_column_is_read(
    frames: tuple[pd.DataFrame, ...], options: dict[str, object], message: str
) -> None:
    reference, current = frames
    with pytest.raises(ValidationFailed, match=message):
        drift(reference, current, **options)  # type: ignore[arg-type]


def test_something_that_is_not_a_frame_is_an_error() -> None:
    with pytest.raises(ValidationFailed, match="the current data is a list; give a pandas"):
        drift(pd.DataFrame({"x": [1.0]}), [1.0, 2.0])


def test_a_report_is_a_drift_report(frames: tuple[pd.DataFrame, ...]) -> None:
    reference, current = frames
    assert isinstance(drift(reference.head(100), current.head(100)), DriftReport)


def test_dictionary_decimal_boolean_and_batch_columns_are_read_as_their_values() -> None:
    from decimal import Decimal

    reference = pa.table(
        {
            "city": pa.array(["oslo", "rome"] * 50).dictionary_encode(),
            "price": pa.array([Decimal("1.50"), Decimal("2.25")] * 50, pa.decimal128(5, 2)),
            "coded": pa.array([1.0, 2.0] * 50).dictionary_encode(),
            "flag": pa.array([True, False] * 50),
        }
    )
    same = drift(reference, reference.to_batches()[0])
    assert same.drifted_columns == []
    plain = pa.table(
        {
            "city": pa.array(["oslo"] * 60 + ["rome"] * 40),
            "price": pa.array([1.5] * 60 + [2.25] * 40),
            "coded": pa.array([1.0] * 60 + [2.0] * 40),
            "flag": pa.array([True] * 60 + [False] * 40),
        }
    )
    cross = drift(reference, plain, categorical_test="psi", numeric_test="psi")
    assert cross.columns["city"].statistic == pytest.approx(cross.columns["flag"].statistic)
    assert cross.columns["price"].statistic == pytest.approx(cross.columns["coded"].statistic)
    assert cross.columns["city"].statistic == pytest.approx(cross.columns["price"].statistic)
