"""The content digest: the same content gives the same digest however it is chunked or sliced."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcycle.data import content_digest

INTS = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))
FLOATS = st.one_of(st.none(), st.floats(allow_nan=False))
TEXTS = st.one_of(st.none(), st.text(max_size=5))


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    rows = draw(st.integers(1, 30))
    return pa.table(
        {
            "i": pa.array(draw(st.lists(INTS, min_size=rows, max_size=rows)), pa.int64()),
            "f": pa.array(draw(st.lists(FLOATS, min_size=rows, max_size=rows)), pa.float64()),
            "s": pa.array(draw(st.lists(TEXTS, min_size=rows, max_size=rows)), pa.large_string()),
            "b": pa.array(
                draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=rows, max_size=rows)),
                pa.bool_(),
            ),
            "l": pa.array(
                draw(
                    st.lists(st.lists(st.integers(0, 9), max_size=3), min_size=rows, max_size=rows)
                ),
                pa.list_(pa.int64()),
            ),
        }
    )


def rechunk(table: pa.Table, cuts: list[int]) -> pa.Table:
    """The same rows as batches cut at ``cuts`` (slices of one buffer, so offsets are non-zero)."""
    bounds = sorted({0, table.num_rows, *(c % (table.num_rows + 1) for c in cuts)})
    parts = [table.slice(a, b - a) for a, b in itertools.pairwise(bounds)]
    return pa.concat_tables(parts)


@settings(max_examples=60, deadline=None)
@given(table=tables(), cuts=st.lists(st.integers(0, 40), max_size=4))
def test_chunking_and_offsets_do_not_change_the_digest(table: pa.Table, cuts: list[int]) -> None:
    chunked = rechunk(table, cuts)
    assert content_digest(chunked) == content_digest(table)
    padded = pa.concat_tables([table.slice(0, 1), table]).slice(1)  # every column offset 1
    assert content_digest(padded) == content_digest(table)


@settings(max_examples=60, deadline=None)
@given(table=tables(), row=st.integers(0, 29), column=st.sampled_from(["i", "f", "s", "b", "l"]))
def test_a_changed_value_changes_the_digest(table: pa.Table, row: int, column: str) -> None:
    row %= table.num_rows
    values = table.column(column).to_pylist()
    old = values[row]
    if column == "s":
        values[row] = (old or "") + "x"
    elif column == "l":
        values[row] = [*(old or []), 1]
    else:
        values[row] = None if old is not None else {"i": 7, "f": 0.5, "b": True}[column]
    changed = table.set_column(
        table.column_names.index(column), column, pa.array(values, table.schema.field(column).type)
    )
    assert content_digest(changed) != content_digest(table)


@settings(max_examples=30, deadline=None)
@given(table=tables())
def test_column_order_names_and_types_are_part_of_the_digest(table: pa.Table) -> None:
    digest = content_digest(table)
    assert content_digest(table.select(["f", "i", "s", "b", "l"])) != digest
    assert content_digest(table.rename_columns(["j", "f", "s", "b", "l"])) != digest
    as_int32 = table.set_column(0, "i", pa.array([None] * table.num_rows, pa.int32()))
    as_int64 = table.set_column(0, "i", pa.array([None] * table.num_rows, pa.int64()))
    assert content_digest(as_int32) != content_digest(as_int64)


def test_values_under_nulls_do_not_count() -> None:
    validity = pa.py_buffer(np.packbits([1, 0, 1], bitorder="little").tobytes())
    first = pa.Array.from_buffers(
        pa.int64(), 3, [validity, pa.py_buffer(np.array([1, 2, 3], np.int64).tobytes())]
    )
    second = pa.Array.from_buffers(
        pa.int64(), 3, [validity, pa.py_buffer(np.array([1, 99, 3], np.int64).tobytes())]
    )
    assert first.to_pylist() == second.to_pylist() == [1, None, 3]
    assert content_digest(pa.table({"x": first})) == content_digest(pa.table({"x": second}))


def test_moving_bytes_between_strings_changes_the_digest() -> None:
    one = pa.table({"s": ["a", "bc"]})
    two = pa.table({"s": ["ab", "c"]})
    assert content_digest(one) != content_digest(two)
    assert content_digest(pa.table({"x": [None, 1]})) != content_digest(pa.table({"x": [0, 1]}))


def test_wide_tables_hash_on_threads_like_narrow_ones() -> None:
    rng = np.random.default_rng(3)
    table = pa.table({f"c{k}": rng.random(20_000) for k in range(8)})
    threaded = content_digest(table)
    assert threaded == content_digest(rechunk(table, [7, 5000, 12_345]))
    assert threaded != content_digest(table.slice(0, 19_999))
