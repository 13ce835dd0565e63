"""The prediction log in one process: columns, rollover into Delta, reads, a torn tail."""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import mlcycle as mc
from mlcycle.errors import ValidationFailed
from mlcycle.serve import (
    PredictionBatch,
    PredictionLog,
    log_table_name,
    read_predictions,
    to_record_batch,
)
from mlcycle.serve import _predictions as reads
from mlcycle.serve._predictions import logged_request_ids
from mlcycle.serve._predlog import FAILED_SUFFIX
from mlcycle.serve._records import copies_record
from mlcycle.serve._segments import SUFFIX, Segment
from mlcycle.store import LocalArtifactStore

T0 = datetime(2030, 5, 1, 23, 59, 59, tzinfo=UTC).timestamp()


def _batch(
    first: int, rows: int = 2, *, variant: str = "primary", at: float = T0
) -> PredictionBatch:
    return PredictionBatch(
        deployment="bike-demand",
        model="bike-demand",
        model_version=3,
        variant=variant,
        shadow=variant == "shadow",
        request_ids=[f"r{first + i}" for i in range(rows)],
        row_indexes=list(range(rows)),
        times=[at + i for i in range(rows)],
        latency_ms=[1.5] * rows,
        inputs={"hr": [23] * rows, "temp": np.full(rows, 0.25)},
        outputs=np.arange(first, first + rows, dtype=np.float64),
    )


@pytest.fixture
def tables(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(root=tmp_path / "artifacts")


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def log(spool: Path, tables: LocalArtifactStore) -> Iterator[PredictionLog]:
    opened = PredictionLog(spool_dir=spool, tables=tables)
    yield opened
    opened.close()


def _read(spool: Path, tables: LocalArtifactStore, **filters: object) -> pa.Table:
    return read_predictions(spool_dir=spool, tables=tables, deployment="bike-demand", **filters)  # type: ignore[arg-type]


def _segments(spool: Path) -> list[Path]:
    return sorted(spool.glob(f"*/*{SUFFIX}"))


def test_close_rolls_everything_into_a_date_partitioned_delta_table(
    log: PredictionLog, spool: Path, tables: LocalArtifactStore
) -> None:
    log.append(_batch(0))
    log.append(_batch(2, variant="shadow"))
    log.close()
    assert _segments(spool) == []
    table = _read(spool, tables)
    assert table.column_names == [
        "request_id", "row_index", "time", "date", "deployment", "model", "model_version",
        "variant", "shadow", "latency_ms", "inputs", "output",
    ]  # fmt: skip
    rows = table.to_pylist()
    assert [r["request_id"] for r in rows] == ["r0", "r2", "r1", "r3"]
    first = rows[0]
    assert first["time"] == datetime.fromtimestamp(T0, UTC)
    assert (first["model"], first["model_version"], first["variant"], first["shadow"]) == (
        "bike-demand", 3, "primary", False,
    )  # fmt: skip
    assert first["inputs"] == {"hr": 23.0, "temp": 0.25}
    assert (first["output"], first["latency_ms"]) == (0.0, 1.5)
    assert {str(r["date"]) for r in rows} == {"2030-05-01", "2030-05-02"}
    folder = Path(tables.table_uri(log_table_name("bike-demand")))
    assert sorted(p.name for p in folder.glob("date=*")) == ["date=2030-05-01", "date=2030-05-02"]


def test_flushed_rows_are_readable_before_they_roll_over(
    log: PredictionLog, spool: Path, tables: LocalArtifactStore
) -> None:
    log.append(_batch(0))
    log.flush()
    assert len(_segments(spool)) == 1
    assert _read(spool, tables).column("request_id").to_pylist() == ["r0", "r1"]


def test_segments_roll_over_by_size_and_are_read_once(
    spool: Path, tables: LocalArtifactStore
) -> None:
    log = PredictionLog(spool_dir=spool, tables=tables, roll_bytes=1, flush_interval_s=0.05)
    for index in range(0, 40, 2):
        log.append(_batch(index))
        log.flush()
    log.close()
    ids = _read(spool, tables).column("request_id").to_pylist()
    assert sorted(ids) == sorted(f"r{i}" for i in range(40))


@pytest.mark.skipif(sys.platform != "linux", reason="a nice value per thread is Linux's")
def test_rollovers_run_on_a_thread_of_lower_priority_than_the_writer(
    spool: Path, tables: LocalArtifactStore, wait_until: Callable[[Callable[[], bool]], None]
) -> None:
    before = set(threading.enumerate())
    log = PredictionLog(spool_dir=spool, tables=tables, roll_bytes=1, flush_interval_s=0.05)
    ours = [t for t in threading.enumerate() if t not in before and t.name.startswith("mlcycle")]
    try:
        log.append(_batch(0))
        log.flush()
        wait_until(lambda: not _segments(spool))  # rolled over: the file is gone
        assert _read(spool, tables).num_rows == 2
        nice = {t.name: os.getpriority(os.PRIO_PROCESS, t.native_id or 0) for t in ours}
        base = os.getpriority(os.PRIO_PROCESS, 0)
        assert nice == {"mlcycle-predlog": base, "mlcycle-predlog-roll": min(base + 10, 19)}
    finally:
        log.close()
    assert not any(thread.is_alive() for thread in ours)


def test_filters_by_time_and_variant(
    log: PredictionLog, spool: Path, tables: LocalArtifactStore
) -> None:
    log.append(_batch(0, rows=4))
    log.append(_batch(10, rows=2, variant="canary", at=T0 + 1))
    log.close()
    start = datetime.fromtimestamp(T0 + 1, UTC)
    since = _read(spool, tables, since=start, until=start + timedelta(seconds=2))
    assert since.column("request_id").to_pylist() == ["r1", "r10", "r11", "r2"]
    canary = _read(spool, tables, variant="canary")
    assert canary.column("request_id").to_pylist() == ["r10", "r11"]
    with pytest.raises(ValidationFailed, match="has no time zone"):
        _read(spool, tables, since=datetime(2030, 1, 1))  # noqa: DTZ001  (the bad input)


def test_batches_of_several_variants_convert_into_one_record_batch_row_by_row() -> None:
    """Each row carries its own batch's variant, version and shadow mark, however they mix."""
    shadow = replace(_batch(10, rows=1, variant="shadow"), model_version=4)
    record = to_record_batch([_batch(0, rows=3), shadow, _batch(20, rows=2, variant="canary")])
    columns = record.to_pydict()
    assert columns["request_id"] == ["r0", "r1", "r2", "r10", "r20", "r21"]
    assert columns["variant"] == ["primary"] * 3 + ["shadow"] + ["canary"] * 2
    assert columns["model_version"] == [3, 3, 3, 4, 3, 3]
    assert columns["shadow"] == [False, False, False, True, False, False]
    assert columns["deployment"] == ["bike-demand"] * 6
    assert columns["output"] == [0.0, 1.0, 2.0, 10.0, 20.0, 21.0]


def test_an_empty_log_reads_as_an_empty_table(spool: Path, tables: LocalArtifactStore) -> None:
    empty = _read(spool, tables)
    assert empty.num_rows == 0
    assert "request_id" in empty.column_names


def test_a_torn_tail_is_dropped_and_the_complete_records_recovered(
    spool: Path, tables: LocalArtifactStore
) -> None:
    record = to_record_batch([_batch(0)])
    segment = Segment(spool / "bike-demand", record.schema)
    segment.write(record)
    segment.write(to_record_batch([_batch(2)]))
    segment.sync()
    whole = segment.size
    segment.write(to_record_batch([_batch(4)]))
    segment.sync()
    with segment.path.open("r+b") as stream:
        stream.truncate(whole + (segment.size - whole) // 2)  # the third batch half written
    segment.release(unlink=False)  # its process is gone: the lock is free
    log = PredictionLog(spool_dir=spool, tables=tables)
    assert _segments(spool) == []
    log.close()
    assert _read(spool, tables).column("request_id").to_pylist() == ["r0", "r2", "r1", "r3"]


def test_a_segment_rolled_before_a_crash_is_not_added_twice(
    spool: Path, tables: LocalArtifactStore, tmp_path: Path
) -> None:
    record = to_record_batch([_batch(0)])
    segment = Segment(spool / "bike-demand", record.schema)
    segment.write(record)
    segment.finish()
    kept = shutil.copy(segment.path, tmp_path / "copy")
    segment.release(unlink=False)
    PredictionLog(spool_dir=spool, tables=tables).close()
    shutil.copy(kept, segment.path)  # as if the crash came between the commit and the unlink
    assert _read(spool, tables).num_rows == 2  # a reader skips the rolled segment
    PredictionLog(spool_dir=spool, tables=tables).close()
    assert _segments(spool) == []
    assert _read(spool, tables).num_rows == 2


def test_a_live_segment_is_left_to_its_writer(
    log: PredictionLog, spool: Path, tables: LocalArtifactStore
) -> None:
    log.append(_batch(0))
    log.flush()
    other = PredictionLog(spool_dir=spool, tables=tables)
    assert other.recover() == 0
    other.close()
    assert len(_segments(spool)) == 1


def test_outputs_of_every_kind_are_stored(
    log: PredictionLog, spool: Path, tables: LocalArtifactStore
) -> None:
    base = _batch(0)
    log.append(_replace(base, deployment="labels", outputs=["rain", "sun"]))
    log.append(_replace(base, deployment="multi", outputs=np.array([[1, 2], [3, 4]])))
    log.append(_replace(base, deployment="counts", outputs=[3, 4]))
    log.close()

    def outputs(name: str) -> list[object]:
        read = read_predictions(spool_dir=spool, tables=tables, deployment=name)
        return read.column("output").to_pylist()

    assert outputs("labels") == ["rain", "sun"]
    assert outputs("multi") == [[1.0, 2.0], [3.0, 4.0]]
    assert outputs("counts") == [3.0, 4.0]


def test_a_batch_that_cannot_be_written_is_lost_alone_and_flush_still_returns(
    log: PredictionLog, spool: Path, tables: LocalArtifactStore, caplog: pytest.LogCaptureFixture
) -> None:
    broken = _replace(_batch(10), outputs=np.array([1.0]))  # one output for its two rows
    log.append(_batch(0))
    log.append(broken)
    log.append(_batch(2))
    flushed = threading.Thread(target=log.flush, kwargs={"timeout_s": 600})
    flushed.start()
    flushed.join(60)
    assert not flushed.is_alive(), "flush waits for a write that failed"
    log.append(_batch(4))
    log.flush()
    assert sorted(_read(spool, tables).column("request_id").to_pylist()) == [
        "r0",
        "r1",
        "r2",
        "r3",
        "r4",
        "r5",
    ]
    assert "rows of deployment bike-demand (requests r10, r11) could not be written" in caplog.text


@pytest.mark.parametrize("first", ["missing", "named"])
def test_a_string_feature_missing_in_every_row_of_a_flush_stays_a_string(
    log: PredictionLog, spool: Path, tables: LocalArtifactStore, first: str
) -> None:
    missing = _replace(_batch(0), inputs={"city": np.array([None, None], dtype=object)})
    named = _replace(_batch(2), inputs={"city": np.array(["oslo", "rome"], dtype=object)})
    for batch in [missing, named] if first == "missing" else [named, missing]:
        log.append(batch)
        log.flush()  # each in a flush, a segment and a rollover of its own
    log.close()
    read = _read(spool, tables)
    assert sorted(read.column("inputs").combine_chunks().field("city").to_pylist(), key=str) == [
        None,
        None,
        "oslo",
        "rome",
    ]
    assert not _segments(spool)


def test_a_segment_the_table_refuses_is_kept_aside_and_the_log_still_opens(
    spool: Path, tables: LocalArtifactStore, caplog: pytest.LogCaptureFixture
) -> None:
    log = PredictionLog(spool_dir=spool, tables=tables)
    log.append(_batch(0))  # numbers out
    log.flush()
    log.append(_replace(_batch(2), outputs=["rain", "sun"]))  # then labels: a new model kind
    log.close()  # the table takes the numbers and refuses the labels
    [kept] = spool.glob(f"*/*{FAILED_SUFFIX}")
    assert "could not be added to the table of deployment bike-demand and was kept" in caplog.text
    PredictionLog(spool_dir=spool, tables=tables).close()  # opens, and leaves it aside
    assert kept.exists()
    assert sorted(_read(spool, tables).column("request_id").to_pylist()) == ["r0", "r1"]


def test_a_segment_being_created_is_never_taken_for_an_orphan(
    spool: Path, tables: LocalArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = PredictionLog(spool_dir=spool, tables=tables)  # another process, starting up
    real_flock = fcntl.flock
    recovered: list[int] = []

    def flock(descriptor: int, operation: int) -> None:
        if operation == fcntl.LOCK_EX and not recovered:  # the new segment's lock, not yet taken
            recovered.append(other.recover())
        real_flock(descriptor, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    log = PredictionLog(spool_dir=spool, tables=tables)
    log.append(_batch(0))
    log.flush()
    monkeypatch.setattr(fcntl, "flock", real_flock)
    assert recovered == [0]
    other.recover()  # the live segment is locked: left to its writer
    log.append(_batch(2))
    log.close()
    other.close()
    assert sorted(_read(spool, tables).column("request_id").to_pylist()) == ["r0", "r1", "r2", "r3"]


def test_ids_rolled_over_while_they_are_looked_up_are_still_found(
    spool: Path, tables: LocalArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = PredictionLog(spool_dir=spool, tables=tables)
    first.append(_batch(100))
    first.close()  # the table exists
    log = PredictionLog(spool_dir=spool, tables=tables)
    log.append(_batch(0))
    log.flush()
    real_read = reads.read_segment

    def read_segment(path: Path) -> pa.Table | None:
        log.close()  # its roller adds the segment to the table and deletes it right now
        return real_read(path)

    monkeypatch.setattr(reads, "read_segment", read_segment)
    known = logged_request_ids(
        spool_dir=spool, tables=tables, deployment="bike-demand", ids=pa.array(["r0", "r1"])
    )
    assert known == {"r0", "r1"}


def _replace(batch: PredictionBatch, **changes: object) -> PredictionBatch:
    from dataclasses import replace

    return replace(batch, **changes)  # type: ignore[arg-type]


def test_bad_knobs_and_appends_after_close_are_refused(
    spool: Path, tables: LocalArtifactStore
) -> None:
    with pytest.raises(ValidationFailed, match="at most 1 second"):
        PredictionLog(spool_dir=spool, tables=tables, flush_interval_s=2)
    log = PredictionLog(spool_dir=spool, tables=tables)
    log.close()
    log.close()  # twice is fine
    with pytest.raises(ValidationFailed, match="the prediction log is closed"):
        log.append(_batch(0))


def test_a_full_queue_drops_and_counts_instead_of_blocking(
    spool: Path, tables: LocalArtifactStore
) -> None:
    log = PredictionLog(spool_dir=spool, tables=tables, max_pending=0)
    log.append(_batch(0))
    log.append(_batch(2))
    log.close()
    assert log.dropped == 2
    assert _read(spool, tables).num_rows == 0


def test_the_workspace_log_and_the_sdk_read(workspace: mc.Workspace) -> None:
    log = workspace.prediction_log(flush_interval_s=0.1)
    log.append(_batch(0))
    log.close()
    try:
        frame = mc.serve.predictions("bike-demand", variant="primary")
        assert list(frame["request_id"]) == ["r0", "r1"]
        assert list(frame["inputs.hr"]) == [23.0, 23.0]
        assert mc.serve.predictions_table("bike-demand").num_rows == 2
    finally:
        mc.close()


def test_failed_requests_are_rows_only_monitoring_reads(tmp_path: Path) -> None:
    """Error rows merge into a table of answers (and answers into one of errors), both ways."""
    tables = LocalArtifactStore(root=tmp_path / "artifacts")
    spool = tmp_path / "spool"

    def batch(request_id: str, error: str | None) -> PredictionBatch:
        return PredictionBatch(
            deployment="bike",
            model="bike",
            model_version=1,
            variant="primary",
            shadow=False,
            request_ids=[request_id],
            row_indexes=[0],
            times=[1_900_000_000.0],
            latency_ms=[1.0],
            inputs={} if error else {"season": ["winter"]},
            outputs=[] if error else ["busy"],
            error=error,
        )

    for first, second in (
        (batch("e1", "422: bad"), batch("a1", None)),
        (batch("a2", None), batch("e2", "500: boom")),
    ):
        log = PredictionLog(spool_dir=spool, tables=tables)
        log.append(first)
        log.close()
        log = PredictionLog(spool_dir=spool, tables=tables)
        log.append(second)
        log.close()
    answers = read_predictions(spool_dir=spool, tables=tables, deployment="bike")
    everything = read_predictions(spool_dir=spool, tables=tables, deployment="bike", errors=True)
    assert sorted(answers.column("request_id").to_pylist()) == ["a1", "a2"]
    assert "error" not in answers.column_names
    assert answers.column("output").to_pylist() == ["busy", "busy"]
    found = {
        r["request_id"]: r["error"] for r in everything.select(["request_id", "error"]).to_pylist()
    }
    assert found == {"e1": "422: bad", "a1": None, "a2": None, "e2": "500: boom"}


def test_a_log_of_only_failures_reads_as_empty(tmp_path: Path) -> None:
    tables = LocalArtifactStore(root=tmp_path / "artifacts")
    log = PredictionLog(spool_dir=tmp_path / "spool", tables=tables)
    log.append(
        PredictionBatch(
            "bike",
            "",
            0,
            "",
            False,
            ["e1"],
            [0],
            [1_900_000_000.0],
            [0.5],
            {},
            [],
            error="503: overloaded",
        )
    )
    log.close()
    found = read_predictions(spool_dir=tmp_path / "spool", tables=tables, deployment="bike")
    assert found.num_rows == 0
    assert "inputs" in found.column_names


def _copies_of(batch: PredictionBatch) -> pa.RecordBatch:
    """What a shadow's tee sends of ``batch`` once it is logged."""
    return to_record_batch([batch]).select(["request_id", "row_index", "time", "inputs"])


def _shadow_record(
    copies: pa.RecordBatch, *, latency_ms: np.ndarray, outputs: np.ndarray, version: int = 3
) -> pa.RecordBatch:
    """The log's record of ``copies`` predicted by shadow variant ``shadow`` (features hr, temp)."""
    return copies_record(
        copies,
        deployment="bike-demand",
        model="bike-demand",
        model_version=version,
        variant="shadow",
        features=["hr", "temp"],
        latency_ms=latency_ms,
        outputs=outputs,
    )


def test_a_shadows_copies_record_is_the_record_its_batch_would_give() -> None:
    shadowed = _batch(0, rows=5, variant="shadow")
    answered = _replace(shadowed, inputs={**shadowed.inputs, "hum": [0.5] * 5})  # not the shadow's
    copies = _copies_of(answered).slice(1, 3)  # a part, as the shadow's process predicts them
    record = _shadow_record(copies, latency_ms=np.full(3, 1.5), outputs=np.arange(1.0, 4.0))
    expected = to_record_batch(
        [
            _replace(
                shadowed,
                request_ids=["r1", "r2", "r3"],
                row_indexes=[1, 2, 3],
                times=[T0 + 1, T0 + 2, T0 + 3],
                latency_ms=[1.5] * 3,
                inputs={"hr": [23] * 3, "temp": np.full(3, 0.25)},
                outputs=np.arange(1, 4, dtype=np.float64),
            )
        ]
    )
    assert record.schema == expected.schema
    assert record.to_pylist() == expected.to_pylist()


def test_ready_records_are_written_with_the_batches_and_read_back(
    log: PredictionLog, spool: Path, tables: LocalArtifactStore
) -> None:
    log.append(_batch(0))
    copies = _copies_of(_batch(0))
    for part in (copies.slice(0, 1), copies.slice(1, 1)):  # two records of one schema: one write
        record = _shadow_record(
            part, latency_ms=np.array([7.0]), outputs=np.array([9.0]), version=4
        )
        log.append_record("bike-demand", record)
    assert log.logged_schema("bike-demand").features == {"hr": "number", "temp": "number"}
    log.flush()
    [segment] = _segments(spool)  # the copies' record has the batches' schema: one segment
    log.close()
    rows = _read(spool, tables).to_pylist()
    shadowed = [row for row in rows if row["shadow"]]
    assert [(r["request_id"], r["model_version"], r["output"]) for r in shadowed] == [
        ("r0", 4, 9.0),
        ("r1", 4, 9.0),
    ]
    assert len(rows) == 4
    assert not segment.exists()


def test_a_ready_record_that_cannot_be_written_is_lost_alone_with_its_requests_named(
    log: PredictionLog, spool: Path, tables: LocalArtifactStore, caplog: pytest.LogCaptureFixture
) -> None:
    record = _shadow_record(_copies_of(_batch(20)), latency_ms=np.ones(2), outputs=np.ones(2))
    log.append(_batch(0))
    log.append_record("../elsewhere", record)  # a hostile name: no segment outside the spool
    log.append_record("bike-demand", record)
    log.flush()
    assert sorted(_read(spool, tables).column("request_id").to_pylist()) == [
        "r0",
        "r1",
        "r20",
        "r21",
    ]
    assert "rows of deployment ../elsewhere (requests r20, r21) could not be written" in caplog.text
    assert not (spool.parent / "elsewhere").exists()
