"""Metric history in chunks: however a history is split in writes, it reads back the same."""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcycle.errors import ValidationFailed
from mlcycle.ids import RunId
from mlcycle.store import SqlMetadataStore, open_metadata_store
from mlcycle.store._metric_chunks import FORMAT, pack_points, unpack_points
from mlcycle.store._records import MetricPoint, RunValues, WriteBatch

KEYS = ("loss", "val/rmse")
T0 = datetime(2030, 1, 1, tzinfo=UTC)

_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0]),
)
_points = st.lists(
    st.tuples(
        st.sampled_from(KEYS),
        _values,
        st.integers(-(2**63), 2**63 - 1) | st.integers(0, 3),  # repeated steps, too
        st.sampled_from([1.0, 2.0]) | st.floats(0, 1e10),  # repeated times, too
    ),
    max_size=30,
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlMetadataStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/mlcycle.db"
    else:
        url = request.getfixturevalue("postgres_url")
    opened = open_metadata_store(url)
    yield opened
    opened.close()


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (
        a == b and math.copysign(1, a) == math.copysign(1, b)
    )


def _expected_history(
    points: list[tuple[str, float, int, float]], key: str
) -> list[tuple[int, float, float]]:
    mine = [(step, time, value) for k, value, step, time in points if k == key]
    return sorted(mine, key=lambda p: (p[0], p[1]))  # stable: write order on ties


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
)
@given(points=_points, cuts=st.lists(st.integers(0, 30), max_size=5), data=st.data())
def test_any_split_reads_back_the_same_history_and_latest(
    store: SqlMetadataStore,
    points: list[tuple[str, float, int, float]],
    cuts: list[int],
    data: st.DataObject,
) -> None:
    experiment = store.ensure_experiment("chunks", actor="ana")
    run = store.create_run(experiment_id=experiment.id, name="r", actor="ana", start_time=T0)
    bounds = sorted({0, len(points), *(min(cut, len(points)) for cut in cuts)})
    batches = [points[a:b] for a, b in itertools.pairwise(bounds)]
    as_tuples = data.draw(st.booleans(), label="points as tuples")
    for batch in batches:
        if as_tuples:
            store.apply(WriteBatch([RunValues(run.id, points=batch)]))
        else:
            store.log_batch(run.id, metrics=[MetricPoint(k, v, s, t) for k, v, s, t in batch])
    latest = store.get_run(run.id).metrics
    for key in KEYS:
        expected = _expected_history(points, key)
        got = [(p.step, p.timestamp, p.value) for p in store.metric_history(run.id, key)]
        assert [(s, t) for s, t, _ in got] == [(s, t) for s, t, _ in expected]
        assert all(_same(g[2], e[2]) for g, e in zip(got, expected, strict=True))
        if not expected:
            assert key not in latest
            continue
        top = max((s, t) for s, t, _ in expected)
        newest = [v for s, t, v in expected if (s, t) == top][-1]  # the later write on a tie
        assert math.isnan(latest[key]) if math.isnan(newest) else latest[key] == newest


@given(st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), st.floats(), _values), max_size=50))
def test_packing_round_trips_every_float_and_step(points: list[tuple[int, float, float]]) -> None:
    steps = [p[0] for p in points]
    times = [p[1] for p in points]
    values = [p[2] for p in points]
    data = pack_points(steps, times, values)
    assert data[0] == FORMAT
    assert len(data) == 1 + 24 * len(points)
    got = unpack_points(data)
    assert list(got[0]) == steps
    assert all(_same(a, b) for a, b in zip(got[1], times, strict=True))
    assert all(_same(a, b) for a, b in zip(got[2], values, strict=True))


def test_the_layout_is_little_endian_and_columnar() -> None:
    data = pack_points([1, 2], [3.0, 4.0], [5.0, math.nan])
    assert data[:17] == b"\x01" + struct.pack("<qq", 1, 2)
    assert data[17:33] == struct.pack("<dd", 3.0, 4.0)
    assert data[33:41] == struct.pack("<d", 5.0)


def test_a_step_beyond_64_bits_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    store = open_metadata_store(f"sqlite:///{tmp_path}/mlcycle.db")
    experiment = store.ensure_experiment("chunks", actor="ana")
    run = store.create_run(experiment_id=experiment.id, name="r", actor="ana", start_time=T0)
    points = [MetricPoint("ok", 1.0, 0, 1.0), MetricPoint("big", 1.0, 2**63, 1.0)]
    with pytest.raises(ValidationFailed, match=r"metric 'big'.*step 9223372036854775808.*64-bit"):
        store.log_batch(run.id, metrics=points)
    assert store.metric_history(run.id, "ok") == []
    assert store.get_run(run.id).metrics == {}
    store.close()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "format nothing"),
        (b"\x02" + bytes(24), "format 2.*upgrade mlcycle"),
        (b"\x01" + bytes(23), "25|24 bytes.*damaged"),
    ],
)
def test_an_unreadable_chunk_is_named(data: bytes, problem: str) -> None:
    with pytest.raises(ValidationFailed, match=problem):
        unpack_points(data)


def test_history_is_read_across_chunks_in_write_order(tmp_path: Path) -> None:
    store = open_metadata_store(f"sqlite:///{tmp_path}/mlcycle.db")
    experiment = store.ensure_experiment("chunks", actor="ana")
    run = store.create_run(experiment_id=experiment.id, name="r", actor="ana", start_time=T0)
    for value in (3.0, 1.0, 2.0):  # the same step and time, three writes
        store.log_batch(run.id, metrics=[MetricPoint("m", value, 7, 1.0)])
    assert [p.value for p in store.metric_history(run.id, "m")] == [3.0, 1.0, 2.0]
    assert store.get_run(run.id).metrics == {"m": 2.0}
    assert store.metric_history(RunId(run.id), "other") == []
    store.close()
