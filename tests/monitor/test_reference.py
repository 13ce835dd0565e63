"""Reference statistics: built once, written and read back whole, or taken from a profile."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcycle.data import profile_table
from mlcycle.errors import ValidationFailed
from mlcycle.monitor import ReferenceStats, drift


def round_trip(stats: ReferenceStats) -> ReferenceStats:
    buffer = io.BytesIO()
    stats.write(buffer)
    buffer.seek(0)
    return ReferenceStats.read(buffer)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=50),
    st.lists(st.sampled_from(["a", "b", "ü", ""]) | st.none(), max_size=50),
)
def test_write_then_read_gives_the_same_reference(
    numbers: list[float], labels: list[str | None]
) -> None:
    table = pa.table({"x": pa.array(numbers, pa.float64())})
    stats = ReferenceStats.from_frame(table)
    back = round_trip(stats)
    np.testing.assert_array_equal(back.column("x").values, stats.column("x").values)
    assert back.column("x").header() == stats.column("x").header()
    cats = ReferenceStats.from_frame(pa.table({"c": pa.array(labels, pa.string())}))
    assert round_trip(cats).column("c").header() == cats.column("c").header()


def test_numbers_are_sorted_finite_values_with_the_rest_counted_missing() -> None:
    stats = ReferenceStats.from_frame(pd.DataFrame({"x": [3.0, np.nan, 1.0, np.inf, 2.0, None]}))
    column = stats.column("x")
    assert column.values is not None
    assert column.values.tolist() == [1.0, 2.0, 3.0]
    assert (column.count, column.missing, column.std) == (3, 3, pytest.approx(np.std([1, 2, 3])))


def test_columns_no_test_reads_are_left_out_and_unknown_ones_named() -> None:
    frame = pd.DataFrame({"x": [1.0], "when": pd.to_datetime(["2024-01-01"])})
    assert ReferenceStats.from_frame(frame).names == ["x"]
    with pytest.raises(ValidationFailed, match=r"the reference has no column\(s\) \['y'\]"):
        ReferenceStats.from_frame(frame, columns=["y"])
    with pytest.raises(ValidationFailed, match=r"the reference has no column 'y'; it has \['x'\]"):
        ReferenceStats.from_frame(frame).column("y")


def test_bytes_that_are_not_a_reference_are_refused() -> None:
    with pytest.raises(ValidationFailed, match="not a drift reference written by mlcycle"):
        ReferenceStats.read(io.BytesIO(b"PAR1 something else"))
    buffer = io.BytesIO()
    ReferenceStats.from_frame(pd.DataFrame({"x": np.arange(100.0)})).write(buffer)
    with pytest.raises(ValidationFailed, match="ends early"):
        ReferenceStats.read(io.BytesIO(buffer.getvalue()[:-8]))
    with pytest.raises(ValidationFailed, match="bytes after its last column"):
        ReferenceStats.read(io.BytesIO(buffer.getvalue() + b"x"))


def test_a_profile_gives_exact_categories_and_a_sampled_numeric_reference() -> None:
    rng = np.random.default_rng(3)
    table = pa.table(
        {"x": rng.normal(0, 2, 50_000), "c": rng.choice(["a", "b", "c"], 50_000).tolist()}
    )
    stats = ReferenceStats.from_profile(profile_table(table))
    x, c = stats.column("x"), stats.column("c")
    assert x.sampled
    assert x.values is not None
    assert x.values.size == 10_000
    assert x.std == pytest.approx(np.std(table["x"].to_numpy()), rel=1e-9)
    exact = ReferenceStats.from_frame(table).column("c")
    assert dict(zip(c.labels, c.counts, strict=True)) == dict(
        zip(exact.labels, exact.counts, strict=True)
    )
    window = pa.table({"x": rng.normal(0, 2, 5_000), "c": rng.choice(["a", "b"], 5_000).tolist()})
    report = drift(stats, window)
    assert report.columns["x"].sampled
    assert report.columns["x"].reference_count == 10_000
    assert report.drifted_columns == ["c"]


def test_an_empty_numeric_reference_has_no_distinct_values() -> None:
    column = ReferenceStats.from_frame(pa.table({"x": pa.array([None], pa.float64())})).column("x")
    values, counts = column.distinct
    assert (values.size, counts.size, column.std) == (0, 0, None)


def test_a_profile_of_one_value_has_a_std_of_zero_and_is_not_sampled() -> None:
    stats = ReferenceStats.from_profile(profile_table(pa.table({"x": [4.0]})))
    assert (stats.column("x").std, stats.sampled) == (0.0, False)
