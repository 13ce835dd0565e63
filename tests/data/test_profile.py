"""Profiles checked against pandas and numpy on the real Bike Sharing data and generated tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mlcycle.data import ColumnProfile, DatasetProfile, Histogram, profile_table
from mlcycle.data._content import content_digest
from mlcycle.data._profile import _sorted
from mlcycle.datasets import BIKE_SHARING_HOURLY

QUANTILES = {
    "p01": 0.01,
    "p05": 0.05,
    "p25": 0.25,
    "p50": 0.5,
    "p75": 0.75,
    "p95": 0.95,
    "p99": 0.99,
}


@pytest.fixture(scope="module")
def bike() -> pa.Table:
    table = pacsv.read_csv(BIKE_SHARING_HOURLY)
    names = {1: "winter", 2: "spring", 3: "summer", 4: "fall"}
    seasons = pa.array([names[s] for s in table.column("season").to_pylist()])
    return table.append_column("season_name", seasons)


def assert_numeric_matches(column: ColumnProfile, values: np.ndarray) -> None:
    """Compare one numeric profile with numpy on the same values (NaN for null)."""
    values = values.astype(np.float64)
    finite = values[np.isfinite(values)]
    assert column.nan_count == int(np.isnan(values).sum())
    assert column.inf_count == int(np.isinf(values).sum())
    if finite.size == 0:
        assert column.min is None
        assert column.histogram is None
        assert column.sample is None
        return
    assert column.min == finite.min()
    assert column.max == finite.max()
    # numpy's own sums overflow near the float limit; compare where the oracle is defined
    moderate = np.abs(finite).max() < 1e150
    if moderate:
        assert column.mean == pytest.approx(finite.mean(), rel=1e-9, abs=1e-9)
        for key, q in QUANTILES.items():
            expected_q = np.quantile(finite, q)
            assert column.quantiles[key] == pytest.approx(expected_q, rel=1e-9, abs=1e-9)
    if finite.size > 1 and moderate:
        assert column.std == pytest.approx(finite.std(ddof=1), rel=1e-7, abs=1e-9)
    elif finite.size <= 1:
        assert column.std is None
    assert column.histogram is not None
    assert sum(column.histogram.counts) == finite.size
    assert all(math.isfinite(edge) for edge in column.histogram.edges)
    # numpy refuses a range too narrow for 20 distinct edges (two subnormals); ours counts
    # every value all the same (above), in degenerate bins
    spaced = moderate and bool(np.all(np.diff(np.linspace(finite.min(), finite.max(), 21)) > 0))
    if finite.min() < finite.max() and spaced:
        expected, edges = np.histogram(finite, bins=20, range=(finite.min(), finite.max()))
        assert column.histogram.edges == pytest.approx(edges.tolist())
        assert column.histogram.counts == expected.tolist()
    assert column.sample is not None
    assert len(column.sample) == min(finite.size, 10_000)
    assert column.sample == sorted(column.sample)
    assert set(column.sample) <= set(finite.tolist())


def test_bike_numeric_columns_match_pandas(bike: pa.Table) -> None:
    profile = profile_table(bike)
    frame = pd.read_csv(BIKE_SHARING_HOURLY)
    assert profile.rows == len(frame) == 17_379
    for name in ("temp", "atemp", "hum", "windspeed", "casual", "registered", "cnt", "hr"):
        column = profile.column(name)
        assert column.kind == "numeric"
        assert column.count == frame[name].count()
        assert column.missing == 0
        assert column.distinct == frame[name].nunique()
        assert column.std == pytest.approx(frame[name].std())
        assert_numeric_matches(column, frame[name].to_numpy())


def test_bike_low_cardinality_integers_carry_category_counts(bike: pa.Table) -> None:
    profile = profile_table(bike)
    frame = pd.read_csv(BIKE_SHARING_HOURLY)
    hours = profile.column("hr")
    expected = {str(k): int(v) for k, v in frame["hr"].value_counts().items()}
    assert hours.category_counts == expected
    assert profile.column("cnt").category_counts is None  # 869 distinct: too many to be codes
    assert profile.column("weathersit").top_values[0] == (
        "1",
        int((frame["weathersit"] == 1).sum()),
    )


def test_bike_categoricals_and_dates(bike: pa.Table) -> None:
    profile = profile_table(bike)
    season = profile.column("season_name")
    assert (season.kind, season.type) == ("categorical", "string")
    counts = bike.column("season_name").to_pandas().value_counts()
    assert season.category_counts == {str(k): int(v) for k, v in counts.items()}
    assert season.top_values == sorted(season.top_values, key=lambda kv: (-kv[1], kv[0]))
    assert (season.distinct, season.histogram, season.sample) == (4, None, None)
    day = profile.column("dteday")
    assert (day.kind, day.min, day.max, day.distinct) == (
        "datetime",
        "2011-01-01",
        "2012-12-31",
        731,
    )


def test_dictionary_boolean_and_other_columns() -> None:
    table = pa.table(
        {
            "d": pa.array(["x", "y", "x", None]).dictionary_encode(),
            "b": pa.array([True, False, True, None]),
            "l": pa.array([[1], [2], None, [3]]),
            "t": pa.array([1, 2, 3, None], type=pa.timestamp("s")),
        }
    )
    profile = profile_table(table)
    assert profile.column("d").kind == "categorical"
    assert profile.column("d").category_counts == {"x": 2, "y": 1}
    assert profile.column("d").missing == 1
    boolean = profile.column("b")
    assert (boolean.kind, boolean.category_counts, boolean.mean) == (
        "boolean",
        {"true": 2, "false": 1},
        pytest.approx(2 / 3),
    )
    assert (profile.column("l").kind, profile.column("l").missing) == ("other", 1)
    assert profile.column("t").min == "1970-01-01T00:00:01"


def test_sample_is_bounded_random_and_deterministic() -> None:
    values = np.random.default_rng(3).exponential(size=50_000)
    first = profile_table(pa.table({"x": values})).column("x").sample
    second = profile_table(pa.table({"x": values[::-1].copy()})).column("x").sample
    assert first is not None
    assert len(first) == 10_000
    assert first == second  # the sample depends on the values, not their order
    assert first != sorted(values)[:10_000]
    # a random sample, not a slice: its median is close to the population's
    assert abs(np.median(first) - np.median(values)) < 0.05


def test_chunked_columns_profile_like_one_chunk() -> None:
    table = pa.table({"x": [1.0, None, 3.0, math.nan, 5.0], "s": ["a", "b", None, "a", "é"]})
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=2))
    assert chunked.column("x").num_chunks > 1
    assert profile_table(chunked) == profile_table(table)


def test_single_value_column_has_one_closed_bin() -> None:
    column = profile_table(pa.table({"x": [7, 7, 7]})).column("x")
    assert column.histogram == Histogram(edges=[7.0, 7.0], counts=[3])
    assert (column.distinct, column.std, column.min, column.max) == (
        1,
        pytest.approx(0.0),
        7.0,
        7.0,
    )


def test_empty_and_all_null_tables() -> None:
    empty = profile_table(
        pa.table({"x": pa.array([], pa.float64()), "s": pa.array([], pa.string())})
    )
    assert empty.rows == 0
    assert [c.count for c in empty.columns] == [0, 0]
    assert empty.column("x").histogram is None
    assert empty.column("s").top_values == []
    nulls = profile_table(pa.table({"x": pa.array([None, None], pa.int64()), "n": [None, None]}))
    assert (nulls.column("x").missing, nulls.column("x").mean) == (2, None)
    assert (nulls.column("n").kind, nulls.column("n").missing) == ("other", 2)
    assert profile_table(pa.table({})).columns == []


def test_unknown_column_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="columns: x"):
        profile_table(pa.table({"x": [1]})).column("y")


def test_bike_profile_json_round_trips(bike: pa.Table) -> None:
    profile = profile_table(bike)
    assert DatasetProfile.from_json(profile.to_json()) == profile
    assert DatasetProfile.from_dict(profile.to_dict()) == profile


def test_shallow_to_dict_writes_the_same_json_as_asdict(bike: pa.Table) -> None:
    """The shallow ``to_dict`` gives byte for byte the JSON the deep ``asdict`` copy gave."""
    import dataclasses

    import orjson

    profile = profile_table(bike)
    assert any(c.histogram is not None and c.sample for c in profile.columns)
    assert any(c.top_values for c in profile.columns)

    def deep(column: ColumnProfile) -> dict[str, object]:
        data = dataclasses.asdict(column)
        data["top_values"] = [[value, count] for value, count in column.top_values]
        return data

    before = orjson.dumps({"rows": profile.rows, "columns": [deep(c) for c in profile.columns]})
    assert profile.to_json() == before
    assert DatasetProfile.from_json(before) == profile


def test_from_dict_rejects_other_documents() -> None:
    from mlcycle.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="not a dataset profile"):
        DatasetProfile.from_dict({"columns": []})


floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
finite_floats = st.floats(min_value=-1e12, max_value=1e12)
words = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6)


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    rows = draw(st.integers(min_value=0, max_value=40))
    maybe = st.none() | floats
    return pa.table(
        {
            "f": pa.array(draw(st.lists(maybe, min_size=rows, max_size=rows)), pa.float64()),
            "g": pa.array(
                draw(st.lists(finite_floats, min_size=rows, max_size=rows)), pa.float64()
            ),
            "i": pa.array(
                draw(
                    st.lists(st.none() | st.integers(-(2**40), 2**40), min_size=rows, max_size=rows)
                ),
                pa.int64(),
            ),
            "s": pa.array(
                draw(st.lists(st.none() | words, min_size=rows, max_size=rows)), pa.string()
            ),
        }
    )


@settings(max_examples=150, deadline=None)
@given(tables())
@example(  # a range of one subnormal step: no 20 distinct bin edges (found by Hypothesis)
    pa.table(
        {
            "f": pa.array([None, None], pa.float64()),
            "g": pa.array([0.0, 5e-324], pa.float64()),
            "i": pa.array([None, None], pa.int64()),
            "s": pa.array([None, None], pa.string()),
        }
    )
)
@example(  # near the float limit: numpy's linspace overflowed inside (found by Hypothesis)
    pa.table(
        {
            "f": pa.array([5.2115130620376814e305, 1.7976931348623157e308], pa.float64()),
            "g": pa.array([0.0, 0.0], pa.float64()),
            "i": pa.array([None, None], pa.int64()),
            "s": pa.array([None, None], pa.string()),
        }
    )
)
@example(  # the same for the oracle, spanning both signs (found by Hypothesis)
    pa.table(
        {
            "f": pa.array([1.7976931348623157e308, -9.9792015476736e291], pa.float64()),
            "g": pa.array([0.0, 0.0], pa.float64()),
            "i": pa.array([None, None], pa.int64()),
            "s": pa.array([None, None], pa.string()),
        }
    )
)
def test_generated_tables_match_numpy_and_round_trip(table: pa.Table) -> None:
    profile = profile_table(table)
    assert profile.rows == table.num_rows
    for name in ("f", "g", "i"):
        column = profile.column(name)
        series = table.column(name).to_pandas()
        assert column.missing == table.column(name).null_count
        assert column.count == table.num_rows - column.missing
        assert column.distinct == series.nunique()
        assert_numeric_matches(
            column,
            series.to_numpy(dtype=np.float64, na_value=np.nan)[
                ~table.column(name).is_null().to_numpy(zero_copy_only=False)
            ],
        )
    strings = profile.column("s")
    expected = table.column("s").to_pandas().value_counts()
    assert strings.category_counts == {str(k): int(v) for k, v in expected.items()}
    assert strings.distinct == len(expected)
    assert DatasetProfile.from_json(profile.to_json()) == profile


@given(
    st.lists(st.integers(min_value=-(2**60), max_value=2**60), max_size=60),
    st.integers(min_value=-5, max_value=5),
    st.booleans(),
)
def test_sorting_shortcuts_give_numpys_sort(values: list[int], shift: int, spread: bool) -> None:
    small = np.array([v % 7 + shift for v in values], dtype=np.float64)  # counted
    wide = np.array(values, dtype=np.float64) if spread else np.sort(small)  # sorted or not
    for array, integer in ((small, True), (wide, True), (wide * 0.5, False)):
        assert np.array_equal(_sorted(array.copy(), integer=integer), np.sort(array))


@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=2, max_size=40)
)
def test_an_in_place_sort_gives_numpys_sort_and_the_same_array(values: list[float]) -> None:
    array = np.array(values, dtype=np.float64)
    expected = np.sort(array)
    ordered = _sorted(array, integer=False, in_place=True)
    assert np.array_equal(ordered, expected)
    assert ordered is array or bool((array[1:] >= array[:-1]).all())  # sorted already: kept


def test_profiling_leaves_the_table_as_it_was() -> None:
    rng = np.random.default_rng(3)
    floats = rng.normal(size=5_000)
    floats[::7] = math.nan
    columns = {
        "f": floats,  # NaN kept apart from the finite values: copied, then sorted
        "i": rng.integers(-(10**9), 10**9, 5_000),  # turned into floats: a copy, sorted in place
        "z": rng.normal(size=5_000),  # Arrow's memory, read-only in numpy
        "n": pa.array([None if k % 5 == 0 else float(k % 97) for k in range(5_000)]),
    }
    table = pa.table(columns)
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=1_700))
    before = [content_digest(table), content_digest(chunked)]
    profile_table(table)
    profile_table(chunked)
    assert [content_digest(table), content_digest(chunked)] == before
