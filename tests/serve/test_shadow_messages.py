"""What a shadow's copies look like on their way to its process: gathered, framed, read back."""

from __future__ import annotations

import array
import pickle

import numpy as np
import pytest

from mlcycle.serve._batching import Job
from mlcycle.serve._rows import Rows
from mlcycle.serve._shadow import Copies, _frame_end, _framed, _Message, _unframed

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
    frame = bytearray(b"".join(_framed(copies)))
    assert _frame_end(bytearray(frame)) == len(frame)
    result = _unframed(frame)
    assert isinstance(result, Copies)
    return result


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


def test_request_ids_come_back_exactly_whatever_they_hold() -> None:
    ids = ["plain", "with\x00a null", "", "snow\N{SNOWMAN}"]
    copies = copies_of(numbers(1.0, 2.0, 3.0, 4.0), ids, [1, 1, 1, 1], [0, 0, 0, 0])
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


def test_a_frame_is_whole_only_once_every_byte_is_there() -> None:
    frame = b"".join(_framed(gathered(numbers(1.0), numbers(2.0))))
    assert [_frame_end(bytearray(frame[:n])) for n in (0, 5, 11)] == [None, None, None]
    assert all(_frame_end(bytearray(frame[:n])) == len(frame) for n in (20, len(frame) - 1))
