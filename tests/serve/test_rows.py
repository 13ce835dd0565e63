"""Request rows against a signature: every type, large and small tables, nulls and NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcycle.errors import ValidationFailed
from mlcycle.registry import ColumnSpec
from mlcycle.serve._rows import Schema, concat_rows

NUMERIC = Schema(
    inputs=(
        ColumnSpec("n", "int64"),
        ColumnSpec("f", "float64"),
        ColumnSpec("maybe", "float64", nullable=True),
    ),
    max_rows=1000,
)
MIXED = Schema(
    inputs=(
        ColumnSpec("city", "string"),
        ColumnSpec("kind", "category", nullable=True),
        ColumnSpec("open", "bool"),
        ColumnSpec("at", "datetime"),
        ColumnSpec("n", "int64"),
    ),
    max_rows=1000,
)


@pytest.mark.parametrize("count", [1, 40])  # checked in Python, and with NumPy
def test_numeric_tables_become_one_matrix(count: int) -> None:
    records = [{"n": i, "f": i / 2, "maybe": None if i % 2 else 1.5} for i in range(count)]
    rows = NUMERIC.from_records(records)
    assert rows.matrix is not None
    assert rows.matrix.shape == (count, 3)
    assert rows.columns["n"].tolist() == list(range(count))
    if count > 1:
        assert math.isnan(rows.columns["maybe"][1])


@pytest.mark.parametrize("count", [1, 40])
@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"n": 1.5}, "expected an integer, got 1.5"),
        ({"f": None}, "does not allow missing values"),
        ({"f": "2"}, "got the string '2'"),
        ({"n": False}, "the boolean False"),
        ({"f": {"a": 1}}, "the object"),
    ],
)
def test_a_bad_value_is_named_by_row_and_column(
    count: int, bad: dict[str, object], words: str
) -> None:
    records = [{"n": 1, "f": 1.0, "maybe": 1.0} for _ in range(count)]
    records[-1] = {**records[-1], **bad}
    with pytest.raises(ValidationFailed, match=f"row {count - 1}, column '{next(iter(bad))}'"):
        NUMERIC.from_records(records)
    with pytest.raises(ValidationFailed, match=words):
        NUMERIC.from_records(records)


def test_tables_of_the_wrong_width_and_non_numeric_tables_are_refused() -> None:
    with pytest.raises(ValidationFailed, match=r"\[rows, 3\]"):
        NUMERIC.from_table(np.zeros((2, 4)))
    with pytest.raises(ValidationFailed, match="row 0: expected a list of 3 numbers"):
        NUMERIC.from_table([[1, 2]])
    with pytest.raises(ValidationFailed, match="city \\(string\\)"):
        MIXED.from_table([[1, 2, 3, 4, 5]])
    with pytest.raises(ValidationFailed, match="infinity"):
        NUMERIC.from_table(np.array([[1.0, np.inf, 0.0]] * 20))
    with pytest.raises(ValidationFailed, match="over the limit of 1,000"):
        NUMERIC.from_table(np.zeros((1001, 3)))


def test_mixed_columns_keep_their_types() -> None:
    records = [
        {"city": "Lyon", "kind": None, "open": True, "at": "2012-09-01T14:00:00", "n": 3},
        {"city": "Oslo", "kind": "b", "open": False, "at": "2012-09-02", "n": 4.0},
    ]
    rows = MIXED.from_records(records)
    assert rows.matrix is None
    assert rows.columns["city"].tolist() == ["Lyon", "Oslo"]
    assert rows.columns["open"].dtype == np.bool_
    assert str(rows.columns["at"].dtype) == "datetime64[ns]"
    merged = concat_rows([rows, rows.slice(1, 2)], MIXED.names)
    assert merged.columns["kind"].tolist() == [None, "b", "b"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"city": 7}, "expected a string"),
        ({"open": 1}, "expected true or false"),
        ({"at": "yesterday"}, "ISO 8601"),
        ({"city": None}, "does not allow missing values"),
    ],
)
def test_mixed_columns_name_their_bad_values(change: dict[str, object], words: str) -> None:
    record = {"city": "Lyon", "kind": "a", "open": True, "at": "2012-09-01", "n": 1}
    with pytest.raises(ValidationFailed, match=words):
        MIXED.from_records([{**record, **change}])


def test_tensors_are_checked_as_arrays() -> None:
    columns = {"n": np.array([1.0, 2.5]), "f": np.array([1.0, 2.0]), "maybe": np.array([1.0, 1.0])}
    with pytest.raises(ValidationFailed, match="expected an integer"):
        NUMERIC.from_columns(columns, 2)
    with pytest.raises(ValidationFailed, match="got a tensor of bool"):
        NUMERIC.from_columns({**columns, "n": np.array([True, False])}, 2)
    with pytest.raises(ValidationFailed, match="missing input 'maybe'"):
        NUMERIC.from_columns({"n": columns["n"], "f": columns["f"]}, 2)
    with pytest.raises(ValidationFailed, match="expected true or false"):
        MIXED.from_columns(
            {
                "city": ["a"],
                "kind": ["b"],
                "open": np.array([1]),
                "at": ["2012-01-01"],
                "n": [1],
            },
            1,
        )


@given(st.lists(st.tuples(st.integers(-(2**40), 2**40), st.floats(-1e9, 1e9)), min_size=1))
def test_rows_round_trip_through_the_matrix(values: list[tuple[int, float]]) -> None:
    records = [{"n": n, "f": f, "maybe": None} for n, f in values]
    rows = NUMERIC.from_records(records)
    assert rows.columns["n"].astype(np.int64).tolist() == [n for n, _ in values]
    assert rows.columns["f"].tolist() == [f for _, f in values]
