"""Checks find every kind of anomaly, with counts and examples, on Arrow, pandas and polars data."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcycle.datasets import BIKE_SHARING_HOURLY
from mlcycle.errors import ValidationFailed
from mlcycle.validate import (
    Anomaly,
    ColumnSchema,
    Schema,
    ValidationReport,
    check,
    infer_schema,
    parse_schema,
)

SCHEMA = parse_schema(
    """\
key: [id]
columns:
  id: {type: int64}
  temp: {type: double, min: 0, max: 1}
  weather: {type: string, domain: [clear, mist, rain]}
  hum: {type: double, required: false, max_missing_fraction: 0.25, allow_nan: true}
"""
)


def good() -> pa.Table:
    return pa.table(
        {
            "id": [1, 2, 3, 4],
            "temp": [0.1, 0.5, 0.9, 1.0],
            "weather": ["clear", "mist", "rain", "clear"],
            "hum": [0.5, None, math.nan, 0.7],
        }
    )


def kinds(report: ValidationReport) -> list[tuple[str, str | None]]:
    return [(a.kind, a.column) for a in report.anomalies]


def test_good_data_passes() -> None:
    report = check(good(), SCHEMA)
    assert report.ok
    assert report.anomalies == []
    report.raise_for_errors()
    assert str(report) == "4 rows, 4 columns: no anomalies"


def test_out_of_range_nan_and_inf_with_examples_and_rows() -> None:
    table = good().set_column(1, "temp", pa.array([-0.5, 0.5, math.inf, 7.0]))
    report = check(table, SCHEMA)
    out = next(a for a in report.anomalies if a.kind == "out_of_range")
    assert (out.count, out.examples, out.rows) == (2, [-0.5, 7.0], [0, 3])
    nan = next(a for a in report.anomalies if a.kind == "nan_or_inf")
    assert (nan.count, nan.examples, nan.rows, nan.severity) == (1, ["inf"], [2], "error")


def test_examples_are_capped_at_five_and_counts_are_exact() -> None:
    values = np.arange(1000, dtype=np.float64) / 100  # 0.00 .. 9.99: 899 above 1
    table = pa.table({"temp": values})
    schema = Schema(columns=[ColumnSchema(name="temp", type="double", min=0, max=1)])
    (anomaly,) = check(table, schema).anomalies
    assert anomaly.count == int((values > 1).sum())
    assert anomaly.examples == values[values > 1][:5].tolist()
    assert anomaly.rows == np.flatnonzero(values > 1)[:5].tolist()


def test_unseen_categories_most_frequent_first() -> None:
    table = good().set_column(2, "weather", pa.array(["snow", "hail", "snow", None]))
    (unseen,) = [a for a in check(table, SCHEMA).anomalies if a.kind == "unseen_category"]
    assert (unseen.count, unseen.examples) == (3, ["snow", "hail"])
    assert "2 categories outside its domain" in unseen.message
    dictionary = table.set_column(2, "weather", table.column("weather").dictionary_encode())
    assert kinds(check(dictionary, SCHEMA)) == [
        ("missing_fraction", "weather"),
        ("unseen_category", "weather"),
    ]


def test_missing_values_required_and_fraction() -> None:
    table = good().set_column(0, "id", pa.array([1, None, 3, None]))
    table = table.set_column(3, "hum", pa.array([None, None, 0.5, 0.6]))
    report = check(table, SCHEMA)
    missing = {a.column: a for a in report.anomalies if a.kind == "missing_fraction"}
    assert (missing["id"].count, missing["id"].rows) == (2, [1, 3])
    assert "allowed: none (required)" in missing["id"].message
    assert missing["hum"].count == 2
    assert "allowed: at most 25.00%" in missing["hum"].message


def test_missing_unexpected_and_mistyped_columns() -> None:
    table = good().drop_columns(["hum"]).append_column("extra", pa.array([1, 2, 3, 4]))
    table = table.set_column(1, "temp", pa.array(["a", "b", "c", "d"]))
    report = check(table, SCHEMA)
    assert sorted(kinds(report)) == [
        ("missing_column", "hum"),
        ("type_mismatch", "temp"),
        ("unexpected_column", "extra"),
    ]
    assert [a.severity for a in report.warnings] == ["warning"]
    assert "column 'temp' is string; the schema expects double" in str(report)


def test_type_families_are_compatible() -> None:
    table = pa.table(
        {
            "id": pa.array([1, 2], pa.int32()),
            "temp": pa.array([0, 1], pa.int8()),  # integers where floats are expected
            "weather": pa.array(["clear", "rain"], pa.large_string()),
            "hum": pa.array([0.5, 0.5], pa.float32()),
        }
    )
    assert check(table, SCHEMA).ok
    floats_for_ints = table.set_column(0, "id", pa.array([1.0, 2.0]))
    assert kinds(check(floats_for_ints, SCHEMA)) == [("type_mismatch", "id")]


def test_duplicate_keys_single_and_composite() -> None:
    table = good().set_column(0, "id", pa.array([1, 1, 2, 1]))
    (dupe,) = check(table, SCHEMA).anomalies
    assert (dupe.kind, dupe.count, dupe.examples) == ("duplicate_key", 2, [1])
    frame = pd.read_csv(BIKE_SHARING_HOURLY, usecols=["dteday", "hr", "cnt"])
    schema = infer_schema(frame, key=["dteday", "hr"])
    assert check(frame, schema).ok
    doubled = pd.concat([frame, frame.iloc[:3]])
    (dupe,) = check(doubled, schema).anomalies
    assert (dupe.kind, dupe.column, dupe.count) == ("duplicate_key", "dteday, hr", 3)
    assert dupe.examples[0] == ["2011-01-01", 0]


def test_empty_data_is_an_error() -> None:
    report = check(good().slice(0, 0), SCHEMA)
    assert kinds(report) == [("empty_data", None)]
    with pytest.raises(ValidationFailed, match="the data has 0 rows"):
        report.raise_for_errors()


def test_raise_for_errors_lists_every_error_and_names_the_dataset() -> None:
    table = good().set_column(1, "temp", pa.array([5.0, 0.5, 0.5, 0.5])).drop_columns(["hum"])
    report = check(table, Schema(columns=SCHEMA.columns, key=["id"], dataset="bike"))
    with pytest.raises(ValidationFailed) as caught:
        report.raise_for_errors()
    message = str(caught.value)
    assert message.startswith("dataset 'bike' breaks its schema (2 errors):")
    assert "missing_column: column 'hum' (double) is missing" in message
    assert "out_of_range: column 'temp' has 1 values outside [0, 1] e.g. 5.0" in message


def test_json_and_html_renderings() -> None:
    table = good().set_column(2, "weather", pa.array(["<script>", "mist", "rain", "clear"]))
    report = check(table, SCHEMA)
    data = json.loads(report.to_json())
    assert data["ok"] is False
    assert data["errors"] == 1
    assert data["anomalies"][0]["examples"] == ["<script>"]
    assert ValidationReport.from_dict(data) == report
    page = report.to_html(title="bike check")
    assert "&lt;script&gt;" in page
    assert "<script" not in page
    assert not re.search(r"https?://", page)
    assert "failed" in page


def test_schema_from_a_file_and_polars_frames(tmp_path: Path) -> None:
    polars = pytest.importorskip("polars")
    path = SCHEMA.save(tmp_path / "s.yaml")
    frame = polars.from_arrow(good())
    assert check(frame, path).ok
    assert check(frame, str(path)).ok
    with pytest.raises(ValidationFailed, match="expected a pyarrow Table"):
        check([1, 2], SCHEMA)
    with pytest.raises(ValidationFailed, match="expected a Schema or a schema file path"):
        check(good(), 42)  # type: ignore[arg-type]


def test_bike_passes_its_inferred_schema_and_a_shifted_copy_does_not() -> None:
    table = pacsv.read_csv(BIKE_SHARING_HOURLY)
    schema = infer_schema(table, key=["instant"])
    assert check(table, schema).anomalies == []
    shifted = table.set_column(
        table.schema.get_field_index("temp"), "temp", pc_multiply(table.column("temp"), 3.0)
    )
    (out,) = check(shifted, schema).anomalies
    assert out.kind == "out_of_range"
    assert out.count == int((np.asarray(shifted.column("temp")) > schema.column("temp").max).sum())


def pc_multiply(column: pa.ChunkedArray, factor: float) -> pa.ChunkedArray:
    import pyarrow.compute as pc

    return pc.multiply(column, factor)


cells = st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.floats(-1e6, 1e6)


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    rows = draw(st.integers(min_value=1, max_value=30))
    words = st.none() | st.text(max_size=4)
    return pa.table(
        {
            "f": pa.array(draw(st.lists(cells, min_size=rows, max_size=rows)), pa.float64()),
            "i": pa.array(
                draw(st.lists(st.none() | st.integers(-1000, 1000), min_size=rows, max_size=rows)),
                pa.int64(),
            ),
            "s": pa.array(draw(st.lists(words, min_size=rows, max_size=rows)), pa.string()),
            "k": pa.array(range(rows), pa.int64()),
        }
    )


@settings(max_examples=100, deadline=None)
@given(tables(), st.floats(0, 1))
def test_data_always_passes_the_schema_inferred_from_it(table: pa.Table, slack: float) -> None:
    schema = infer_schema(table, slack=slack, key=["k"])
    assert check(table, schema).anomalies == []
    assert check(table, parse_schema(schema.to_yaml())).anomalies == []


@settings(max_examples=100, deadline=None)
@given(tables(), st.floats(-1e6, 1e6))
def test_out_of_range_counts_match_numpy(table: pa.Table, cut: float) -> None:
    schema = Schema(
        columns=[
            ColumnSchema(
                name="f",
                type="double",
                required=False,
                max_missing_fraction=1,
                max=cut,
                allow_nan=True,
                allow_inf=True,
            )
        ]
    )
    report = check(table.select(["f"]), schema)
    values = np.asarray(table.column("f").to_pandas(), dtype=np.float64)
    expected = int((np.isfinite(values) & (values > cut)).sum())
    found = [a for a in report.anomalies if a.kind == "out_of_range"]
    assert (found[0].count if found else 0) == expected
    assert all(isinstance(a, Anomaly) for a in report.anomalies)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.none() | st.integers(-50, 50), min_size=1, max_size=40),
    st.sampled_from([pa.int64(), pa.int16(), pa.uint32(), pa.timestamp("us")]),
)
def test_duplicate_key_counts_match_python(values: list[int | None], type_: pa.DataType) -> None:
    if not pa.types.is_signed_integer(type_) and not pa.types.is_timestamp(type_):
        values = [None if v is None else abs(v) for v in values]
    for ordered in (values, sorted(values, key=lambda v: (v is not None, v or 0))):
        table = pa.table({"k": pa.array(ordered, pa.int64()).cast(type_)})
        schema = Schema(
            columns=[
                ColumnSchema(name="k", type=str(type_), required=False, max_missing_fraction=1)
            ],
            key=["k"],
        )
        found = [a for a in check(table, schema).anomalies if a.kind == "duplicate_key"]
        extra = len(ordered) - len(set(ordered))
        assert (found[0].count if found else 0) == extra


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.none() | st.integers(-1000, 1000), min_size=1, max_size=30),
    st.floats(-1100, 1100),
    st.floats(0, 500),
    st.sampled_from([pa.int64(), pa.float64()]),
)
def test_bounds_on_nullable_columns_match_numpy(
    values: list[int | None], low: float, width: float, type_: pa.DataType
) -> None:
    """Nulls are filled inside the bounds for the fast path and never counted as outside."""
    table = pa.table({"x": pa.array(values, pa.int64()).cast(type_)})
    schema = Schema(
        columns=[
            ColumnSchema(
                name="x",
                type=str(type_),
                required=False,
                max_missing_fraction=1,
                min=low,
                max=low + width,
            )
        ]
    )
    present = np.array([v for v in values if v is not None], dtype=np.float64)
    expected = int(((present < low) | (present > low + width)).sum())
    found = [a for a in check(table, schema).anomalies if a.kind == "out_of_range"]
    assert (found[0].count if found else 0) == expected


@pytest.mark.parametrize("slack", [0.0, 0.5])
def test_a_range_wider_than_a_float_still_gives_bounds_its_data_passes(slack: float) -> None:
    table = pa.table({"f": [1.7976931348623157e308, -9.9792015476736e291], "k": [0, 1]})
    schema = infer_schema(table, slack=slack, key=["k"])
    assert check(table, schema).anomalies == []
