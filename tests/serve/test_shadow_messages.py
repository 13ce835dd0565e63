"""What a shadow's copies look like on their way to its process: gathered, framed, read back."""

from __future__ import annotations

import array
import pickle

import numpy as np
import pytest

from mlcycle.serve._batching import Job
from mlcycle.serve._rows import Rows
from mlcycle.serve._shadow import (
    _FRAME,
    Copies,
    _copies_framed,
    _copies_read,
    _frame_end,
    _Message,
    _unframed,
)

NAMES = ["a", "b"]


def numbers(*values: float) -> Rows:
    return Rows(len(values), NAMES, matrix=np.array([[v, -v] for v in values]))


def words(*values: float) -> Rows:
    columns = {"a": np.array(values), "b": np.array([str(v) for v in values], dtype=object)}
    return Rows(len(values), NAMES, columns=columns)


def gathered(*batches: Rows) -> Copies:
    message = _Message()
    for batch in batches:
        first = float(batch.columns["a"][0])
        jobs = [Job(rows=batch, request_id=f"r{first:g}", arrived=first, time=first)]
        message.add(jobs, batch)
    return message.copies(NAMES)


def framed_and_back(copies: Copies) -> Copies:
    frame = bytearray(b"".join(_copies_framed(copies)))
    assert _frame_end(bytearray(frame)) == len(frame)
    result = _copies_read(_unframed(frame), NAMES)
    assert isinstance(result, Copies)
    return result


def pickled_bytes(copies: Copies) -> int:
    """The size of the pickle in ``copies``'s frame: 0 when it went as bytes alone."""
    size: int = _FRAME.unpack_from(b"".join(_copies_framed(copies)))[0]
    return size


@pytest.mark.parametrize(
    "batches",
    [
        [numbers(1.0, 2.0)],  # one part goes as it is
        [numbers(float(n)) for n in range(100)],  # past the matrix's first room
        [numbers(1.0), words(2.0, 3.0), numbers(4.0)],  # columns in the middle
        [words(1.0), numbers(2.0)],
    ],
)
def test_the_gathered_rows_are_the_batches_rows_in_order(batches: list[Rows]) -> None:
    copies = framed_and_back(gathered(*batches))
    want = np.concatenate([batch.columns["a"] for batch in batches]).astype(float)
    assert copies.rows.count == len(want)
    assert np.array_equal(np.asarray(copies.rows.columns["a"], dtype=float), want)
    assert list(copies.counts) == [batch.count for batch in batches]
    assert copies.request_ids == [f"r{batch.columns['a'][0]:g}" for batch in batches]


def copies_of(rows: Rows, ids: list[str], counts: list[int], first_rows: list[int]) -> Copies:
    moments = array.array("d", range(len(ids)))
    return Copies(
        rows,
        "".join(ids),
        array.array("q", map(len, ids)),
        array.array("q", counts),
        array.array("q", first_rows),
        moments,
        moments,
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.bool_])
def test_a_matrix_of_numbers_goes_as_bytes_and_comes_back_the_same(dtype: type) -> None:
    matrix = np.arange(12).reshape(6, 2).astype(dtype)
    copies = copies_of(Rows(6, NAMES, matrix=matrix), ["r1", "r2"], [2, 4], [0, 0])
    assert pickled_bytes(copies) == 0
    back = framed_and_back(copies)
    assert back.rows.matrix is not None
    assert back.rows.matrix.dtype == dtype
    assert np.array_equal(back.rows.matrix, matrix)
    assert back.rows.names == NAMES
    assert (list(back.counts), list(back.first_rows)) == ([2, 4], [0, 0])
    assert (list(back.arrived), list(back.times)) == (list(copies.arrived), list(copies.times))


def test_rows_that_are_not_all_numbers_go_pickled() -> None:
    copies = gathered(words(1.0, 2.0))
    assert pickled_bytes(copies) > 0
    back = framed_and_back(copies)
    assert list(back.rows.columns["b"]) == ["1.0", "2.0"]
    strided = Rows(2, NAMES, matrix=np.arange(8.0).reshape(2, 4)[:, ::2])  # not contiguous
    assert pickled_bytes(copies_of(strided, ["x", "y"], [1, 1], [0, 0])) > 0


def test_request_ids_come_back_exactly_whatever_they_hold() -> None:
    ids = ["plain", "with\x00a null", "", "snow\N{SNOWMAN}", "half a pair \ud800"]
    copies = copies_of(numbers(1.0, 2.0, 3.0, 4.0, 5.0), ids, [1] * 5, [0] * 5)
    assert pickle.loads(pickle.dumps(copies, protocol=5)).request_ids == ids
    assert framed_and_back(copies).request_ids == ids
    assert [alone.request_ids for alone in copies.each()] == [[i] for i in ids]
    empty = copies_of(Rows(0, NAMES, matrix=np.empty((0, 2))), [], [], [])
    assert framed_and_back(empty).request_ids == []


def test_each_row_has_its_request_and_its_index_within_it() -> None:
    copies = copies_of(numbers(1.0, 2.0, 3.0, 4.0), ["a", "bb"], [1, 3], [0, 4])
    assert copies.row_fields() == (["a", "bb", "bb", "bb"], [0, 4, 5, 6], [0.0, 1.0, 1.0, 1.0])
    alone = list(copies.each())[1]
    assert (alone.request_ids, list(alone.counts), alone.rows.count) == (["bb"], [3], 3)
    assert list(alone.rows.columns["a"]) == [2.0, 3.0, 4.0]


@pytest.mark.parametrize("rows", [numbers(1.0, 2.0), words(1.0, 2.0)])
def test_a_frame_is_whole_only_once_every_byte_is_there(rows: Rows) -> None:
    frame = b"".join(_copies_framed(gathered(rows)))
    head = _FRAME.size + 8 * _FRAME.unpack_from(frame)[1]  # then one size per buffer
    assert [_frame_end(bytearray(frame[:n])) for n in (0, 5, _FRAME.size, head - 1)] == [None] * 4
    assert all(_frame_end(bytearray(frame[:n])) == len(frame) for n in (head, len(frame) - 1))
