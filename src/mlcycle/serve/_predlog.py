"""The prediction log: every served prediction, durable off the request path, then a Delta table.

``append`` only puts the batch on a queue. A writer thread turns queued
batches into Arrow record batches, appends them to this process's spool
segments (``_segments``) and fsyncs at least every ``flush_interval_s``
(0.2 s by default), so a SIGKILL loses at most that much. Right after each
round's answered rows are synced, the writer hands them, one record batch a
deployment, to that deployment's tees (``add_tee``): its shadow variants,
which never make it wait. Segments roll over, by size, by age and on
``close``, on a second thread at a lower CPU priority (a rollover is a burst
of CPU the requests should not wait for), into the Delta table
``predictions/<deployment>`` of the artifact store's table area, partitioned
by ``date``; closing a log also rolls over the segments of processes that
ended (a stopped shadow variant's process leaves its own to its worker's).
Each rollover commits with a Delta app transaction named after
its segment, so a segment rolled again after a crash is never added twice,
and readers skip segments whose rows are already in the table. Several server
processes each keep their own segments and append to the same table; Delta's
commit protocol (retried on conflict) keeps concurrent appends whole.

Columns: ``request_id, row_index, time, date, deployment, model,
model_version, variant, shadow, latency_ms, inputs`` (a struct with one field
per feature) and ``output``. Numbers are stored as float64 (integers
included), so batches of one model always share a schema.

Failed requests are rows too, with an ``error`` column (``"422: ..."``) and
neither ``inputs`` nor ``output``: Delta's schema merge adds the column to an
older table, where earlier rows read it as null, and their missing columns
read as null. ``read_predictions`` leaves them out unless asked for
``errors=True`` (monitoring's error rate), so every other reader sees the
columns it always saw.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.errors import ValidationFailed
from mlcycle.serve._deployments import SEVERAL_VALUES, LogSchema, one_a_row
from mlcycle.serve._rows import MatrixColumns
from mlcycle.serve._segments import (
    SUFFIX,
    Segment,
    claim_orphans,
    read_segment,
    segment_schema,
)
from mlcycle.serve._sink import PredictionBatch
from mlcycle.store import check_deployment_name

if TYPE_CHECKING:
    from mlcycle.settings import Settings
    from mlcycle.store import TableArea

__all__ = [
    "PredictionLog",
    "Tee",
    "aware_utc",
    "column_kind",
    "copies_record",
    "log_table_name",
    "logged_request_ids",
    "read_log_schema",
    "read_predictions",
    "spool_dir",
    "to_record_batch",
]

_log = logging.getLogger("mlcycle.serve.predlog")
_COMMIT_RETRIES = 20
_PARTITION = "date"
FAILED_SUFFIX = ".failed"
"""A segment the Delta table refused is kept under this suffix (``recover``)."""
_ROLL_NICE = 10
"""The roller thread's nice value: below the requests, yet never starved (as idle would be)."""


class Tee(Protocol):
    """Takes copies of a deployment's answered rows as the log's writer writes them (a shadow).

    Both are called on the writer's thread, which must never wait for them:
    a tee that cannot keep up drops copies, never holds up the log.
    """

    def take(self, record: pa.RecordBatch) -> None:
        """A record batch of answered rows, just written and synced (the log's columns)."""
        ...

    def send(self) -> None:
        """The writer's round ended: hand on what was taken, as far as can be done at once."""
        ...


@dataclass(frozen=True, slots=True)
class _Ready:
    """A record batch queued ready in the log's columns (``append_record``)."""

    deployment: str
    record: pa.RecordBatch
    error: None = None

    @property
    def request_ids(self) -> list[str]:
        """Its rows' request ids (only to name them in an error)."""
        ids: list[str] = self.record.column("request_id").to_pylist()
        return ids


def spool_dir(settings: Settings) -> Path:
    """Where this machine's server processes keep their prediction log segments."""
    return settings.workspace_dir / "spool" / "predictions"


def log_table_name(deployment: str) -> str:
    """The table-area name of a deployment's prediction log."""
    return f"predictions/{check_deployment_name(deployment)}"


class PredictionLog:
    """A ``PredictionSink`` writing spool segments under ``spool_dir`` and rolling them to Delta.

    Opening it first rolls over the segments of processes that died (their
    complete records; a torn tail is dropped). ``append`` never blocks and
    never raises for a full queue: past ``max_pending`` queued batches, new
    ones are counted in ``dropped`` and discarded, so a stalled disk cannot
    stall serving.
    """

    def __init__(
        self,
        *,
        spool_dir: Path,
        tables: TableArea,
        flush_interval_s: float = 0.2,
        roll_bytes: int = 64 * 1024 * 1024,
        roll_age_s: float = 60.0,
        max_pending: int = 100_000,
    ) -> None:
        if not 0 < flush_interval_s <= 1:
            raise ValidationFailed(
                f"flush_interval_s={flush_interval_s} must be above 0 and at most 1 second, "
                "the most a crash may lose"
            )
        self.spool_dir = spool_dir
        self.tables = tables
        self.flush_interval_s = flush_interval_s
        self.roll_bytes = roll_bytes
        self.roll_age_s = roll_age_s
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: collections.deque[PredictionBatch | _Ready] = collections.deque()
        self._segments: dict[tuple[str, pa.Schema], Segment] = {}
        self._wake = threading.Event()
        self._stop = False
        self._written = threading.Condition()
        self._durable = 0
        self._appended = 0
        self._tees: dict[str, tuple[Tee, ...]] = {}
        """By deployment, what takes copies of its answered rows (replaced whole, never changed:
        the writer reads it without a lock)."""
        self._tees_changing = threading.Lock()
        spool_dir.mkdir(parents=True, exist_ok=True)
        self.recover()
        self._rolls: queue.SimpleQueue[tuple[str, Segment] | None] = queue.SimpleQueue()
        """Finished segments for the roller thread to commit; ``None`` ends it."""
        self._roller = threading.Thread(
            target=self._roll_queued, name="mlcycle-predlog-roll", daemon=True
        )
        self._roller.start()
        self._thread = threading.Thread(target=self._run, name="mlcycle-predlog", daemon=True)
        self._thread.start()

    def append(self, batch: PredictionBatch) -> None:
        """Queue ``batch`` for the writer; returns at once."""
        self._queue(batch)

    def append_record(self, deployment: str, record: pa.RecordBatch) -> None:
        """Queue ``deployment``'s answered rows already in the log's columns; returns at once.

        ``record`` is what ``copies_record`` makes: a shadow's process logs the
        copies it predicted without turning their columns into Python values
        and back.
        """
        self._queue(_Ready(deployment, record))

    def _queue(self, batch: PredictionBatch | _Ready) -> None:
        if self._stop:
            raise ValidationFailed("the prediction log is closed; open a new PredictionLog")
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        self._pending.append(batch)
        self._appended += 1

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until the writer is done with every batch appended so far.

        Each is durable in a segment then, or was lost with an error in the
        log (``_write_pending``).
        """
        target = self._appended
        self._wake.set()
        with self._written:
            self._written.wait_for(lambda: self._durable >= target, timeout=timeout_s)

    def add_tee(self, deployment: str, tee: Tee) -> None:
        """Hand ``tee`` every record batch of ``deployment``'s answered rows written from now on."""
        with self._tees_changing:
            tees = dict(self._tees)
            tees[deployment] = (*tees.get(deployment, ()), tee)
            self._tees = tees

    def remove_tee(self, deployment: str, tee: Tee) -> None:
        """Stop handing ``tee`` rows; a writer's round already under way may still call it."""
        with self._tees_changing:
            tees = dict(self._tees)
            kept = tuple(t for t in tees.get(deployment, ()) if t is not tee)
            if kept:
                tees[deployment] = kept
            else:
                tees.pop(deployment, None)
            self._tees = tees

    def close(self) -> None:
        """Write what is queued, roll every segment into Delta, and stop the writer.

        Then the segments of processes that ended meanwhile are rolled over
        too: those a shadow variant's process leaves when it stops (it only
        syncs them, at its idle priority), once its worker closes its log.
        """
        if self._stop:
            return
        self._stop = True
        self._wake.set()
        self._thread.join()
        self._rolls.put(None)  # after every segment the writer finished
        self._roller.join()
        self.recover()

    def recover(self) -> int:
        """Roll over the segments of dead processes; returns how many rows they held.

        A segment the table refuses (its columns' types conflict with the
        table's) is renamed to ``*.failed`` beside the spool's segments, with
        an error in the log, so it no longer stops every log from opening.
        """
        rows = 0
        with claim_orphans(self.spool_dir) as orphans:
            for path, _lock in orphans:
                table = read_segment(path)
                if table is not None:
                    try:
                        self._commit(path.parent.name, path.stem, table)
                    except Exception as exc:  # noqa: BLE001  (logged; the file is kept aside)
                        kept = path.with_suffix(FAILED_SUFFIX)
                        path.rename(kept)
                        _log.error(
                            "prediction log: segment %s (%d rows) could not be added to the "
                            "table of deployment %s and was kept as %s: %s",
                            path.name,
                            table.num_rows,
                            path.parent.name,
                            kept,
                            exc,
                        )
                        continue
                    rows += table.num_rows
                path.unlink(missing_ok=True)
        return rows

    def logged_schema(self, deployment: str) -> LogSchema:
        """What the log holds for ``deployment``: its output's kind and each feature's.

        Each is unknown while no answered prediction of it is logged. Read
        from its Delta table (which refuses rows of another kind), else the
        batches queued, else the segments this log writes, else the segments
        in the spool (other processes' too).
        """
        found = [_table_schema(deployment, self.tables)]
        features: set[str] = set()  # a batch of none but these tells nothing new
        queued = False
        for batch in reversed(list(self._pending)):  # list(): one step under the GIL
            if batch.deployment != deployment or batch.error is not None:
                continue
            if isinstance(batch, _Ready):
                found.append(_schema_words(batch.record.schema))
            elif not queued or not features.issuperset(batch.inputs):
                found.append(_batch_schema(batch))
                features.update(batch.inputs)
                queued = True
        found += [
            _schema_words(schema) for name, schema in list(self._segments) if name == deployment
        ]
        return _first_known([*found, *_spool_schemas(self.spool_dir, deployment)])

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self._guarded(self._write_pending)
            self._guarded(self._roll_due)
        self._guarded(self._write_pending)
        for key in list(self._segments):
            self._guarded(self._roll, key)

    def _guarded(self, work: Callable[..., None], *args: Any) -> None:  # Any: work's arguments
        try:
            work(*args)
        except Exception:  # noqa: BLE001  (the writer must outlive a bad batch or a full disk)
            _log.exception("prediction log writer failed; its segments stay in the spool")

    def _write_pending(self) -> None:
        """Write and sync what is queued; the writer is done with it even when that fails.

        Batches of one deployment, features and outcome go in one record
        batch (ready record batches of one deployment and schema too); a
        group that cannot be written goes batch by batch, so only a batch
        that cannot be written at all (its values do not fit its group's, a
        full disk) is lost, with an error naming it.
        """
        taken: list[PredictionBatch | _Ready] = []
        while self._pending:
            taken.append(self._pending.popleft())
        try:
            groups: dict[tuple[object, ...], list[PredictionBatch | _Ready]] = {}
            for batch in taken:
                group = (
                    (batch.deployment, batch.record.schema)
                    if isinstance(batch, _Ready)
                    else (batch.deployment, tuple(batch.inputs), batch.error is not None)
                )
                groups.setdefault(group, []).append(batch)
            touched: dict[int, Segment] = {}
            written: list[tuple[str, pa.RecordBatch]] = []
            for batches in groups.values():
                self._write_group(batches, touched, written)
            for segment in touched.values():
                segment.sync()
            self._tee(written)
        finally:
            with self._written:
                self._durable += len(taken)
                self._written.notify_all()

    def _write_group(
        self,
        batches: list[PredictionBatch | _Ready],
        touched: dict[int, Segment],
        written: list[tuple[str, pa.RecordBatch]],
    ) -> None:
        """Write ``batches`` (one group); answered rows written are added to ``written``."""
        try:
            record = _group_record(batches)
            key = (batches[0].deployment, record.schema)
            segment = self._segments.get(key)
            if segment is None:
                folder = self.spool_dir / check_deployment_name(key[0])
                segment = self._segments[key] = Segment(folder, record.schema)
            try:
                segment.write(record)
            except Exception:
                self._retire(key)  # its end may be torn: later rows go to a new segment
                raise
            touched[id(segment)] = segment
            if batches[0].error is None:
                written.append((key[0], record))
        except Exception as exc:  # noqa: BLE001  (logged; its neighbours are still written)
            if len(batches) > 1:
                for batch in batches:
                    self._write_group([batch], touched, written)
                return
            [batch] = batches
            _log.error(
                "prediction log: %d rows of deployment %s (requests %s) could not be "
                "written and are lost: %s",
                len(batch.request_ids),
                batch.deployment,
                ", ".join(sorted(set(batch.request_ids))[:5]),
                exc,
                exc_info=exc,
            )

    def _tee(self, written: list[tuple[str, pa.RecordBatch]]) -> None:
        """Hand the answered rows just written to their deployments' tees; then let each send.

        A tee that fails is logged and left for the next round: the rows are
        written whatever it does.
        """
        tees = self._tees
        if not tees:
            return
        for deployment, record in written:
            for tee in tees.get(deployment, ()):
                _handed(deployment, tee.take, record)
        for deployment, each in tees.items():
            for tee in each:
                _handed(deployment, tee.send)

    def _roll_due(self) -> None:
        now = time.monotonic()
        for key, segment in list(self._segments.items()):
            if segment.size >= self.roll_bytes or now - segment.opened >= self.roll_age_s:
                self._roll(key)

    def _retire(self, key: tuple[str, pa.Schema]) -> None:
        """Hand a segment whose last write failed to the roller as it is.

        ``read_segment`` keeps its complete record batches and drops a torn
        end; rows written after a torn message would be dropped with it.
        """
        segment = self._segments.pop(key)
        with contextlib.suppress(OSError):
            segment.sync()
        self._rolls.put((key[0], segment))

    def _roll(self, key: tuple[str, pa.Schema]) -> None:
        """End a segment (new rows go to a new one) and queue it for the roller thread."""
        segment = self._segments.pop(key)
        segment.finish()
        self._rolls.put((key[0], segment))

    def _roll_queued(self) -> None:
        """The roller thread: commit each finished segment into Delta, at a lower priority.

        A rollover reads a segment of up to ``roll_bytes`` and writes it as
        Parquet (deltalake's own threads, started by this one, inherit its
        priority): a burst of a second of CPU, which at normal priority took
        the cores from the requests being answered meanwhile.
        """
        _lower_priority()
        while (queued := self._rolls.get()) is not None:
            self._guarded(self._commit_segment, *queued)

    def _commit_segment(self, deployment: str, segment: Segment) -> None:
        table = read_segment(segment.path)
        try:
            if table is not None:
                self._commit(deployment, segment.id, table)
        except BaseException:
            segment.release(unlink=False)  # kept: the next open rolls it over
            raise
        segment.release(unlink=True)

    def _commit(self, deployment: str, segment_id: str, table: pa.Table) -> None:
        from deltalake import (  # noqa: PLC0415  (heavy; on first use)
            CommitProperties,
            DeltaTable,
            Transaction,
            write_deltalake,
        )
        from deltalake.exceptions import CommitFailedError, TableNotFoundError  # noqa: PLC0415

        uri = self.tables.table_uri(log_table_name(deployment))
        options = self.tables.storage_options() or None
        for attempt in range(_COMMIT_RETRIES):
            with contextlib.suppress(TableNotFoundError):
                if DeltaTable(uri, storage_options=options).transaction_version(segment_id):
                    return  # rolled over before a crash; its rows are in the table
            try:
                write_deltalake(
                    uri,
                    table,
                    mode="append",
                    partition_by=[_PARTITION],
                    schema_mode="merge",
                    storage_options=options,
                    commit_properties=CommitProperties(
                        app_transactions=[Transaction(segment_id, 1)]
                    ),
                )
                return
            except CommitFailedError:
                if attempt == _COMMIT_RETRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))


def _group_record(batches: list[PredictionBatch | _Ready]) -> pa.RecordBatch:
    """One group of ``_write_pending`` as one record batch of the log's columns."""
    ready = [batch.record for batch in batches if isinstance(batch, _Ready)]
    if ready:
        return ready[0] if len(ready) == 1 else pa.concat_batches(ready)
    return to_record_batch([batch for batch in batches if isinstance(batch, PredictionBatch)])


def _handed(deployment: str, call: Callable[..., None], *args: Any) -> None:  # Any: call's
    """Call a tee of ``deployment``; its failure is logged, and the writer goes on."""
    try:
        call(*args)
    except Exception:  # noqa: BLE001  (the rows are written whatever a shadow does)
        _log.exception("prediction log: handing copies of %s to a shadow failed", deployment)


def _lower_priority() -> None:
    """Give the calling thread a nice value of ``_ROLL_NICE`` (Linux: nice is per thread)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _ROLL_NICE)


def _column(chunks: Sequence[Any]) -> pa.Array:  # Any: each chunk a sequence or NumPy array
    """One column from the values of several batches, numbers as float64."""
    if all(isinstance(chunk, np.ndarray) for chunk in chunks):
        values: Any = np.concatenate(chunks)  # Any: a NumPy array
        if values.ndim > 1:  # a multi-output model: one list per row
            values = list(values)
    else:
        values = []
        for chunk in chunks:
            values.extend(chunk.tolist() if isinstance(chunk, np.ndarray) else chunk)
    try:
        array = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = pa.array([None if v is None else str(v) for v in values], pa.string())
    kind = array.type
    if pa.types.is_null(kind) and all(
        isinstance(chunk, np.ndarray) and chunk.dtype == object for chunk in chunks
    ):  # a string (or category) feature missing in every row of these batches
        return array.cast(pa.string())
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind):
        return array.cast(pa.float64())
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        value = kind.value_type
        if pa.types.is_integer(value) or pa.types.is_floating(value):
            return array.cast(pa.list_(pa.float64()))
    return array


def read_log_schema(deployment: str, *, spool_dir: Path, tables: TableArea) -> LogSchema:
    """What ``deployment``'s prediction log holds a row: its output's kind and each feature's.

    Read from its Delta table, else from the segments in the spool (any
    process's); each is unknown while no answered prediction of it is logged.
    """
    return _first_known([_table_schema(deployment, tables), *_spool_schemas(spool_dir, deployment)])


def _table_schema(deployment: str, tables: TableArea) -> LogSchema:
    from deltalake import DeltaTable  # noqa: PLC0415  (heavy; on first use)
    from deltalake.exceptions import TableNotFoundError  # noqa: PLC0415

    uri = tables.table_uri(log_table_name(deployment))
    try:
        delta = DeltaTable(uri, storage_options=tables.storage_options() or None)
    except TableNotFoundError:
        return LogSchema()
    return _schema_words(pa.schema(delta.schema().to_arrow()))


def _spool_schemas(spool_dir: Path, deployment: str) -> list[LogSchema]:
    schemas = [segment_schema(path) for path in _segment_paths(spool_dir, deployment)]
    return [_schema_words(schema) for schema in schemas if schema is not None]


def _first_known(schemas: Iterable[LogSchema]) -> LogSchema:
    """One ``LogSchema``: each kind as the first of ``schemas`` that knows it says."""
    output: str | None = None
    features: dict[str, str] = {}
    for schema in schemas:
        output = output or schema.output
        features = {**schema.features, **features}
    return LogSchema(output=output, features=features)


def _schema_words(schema: pa.Schema) -> LogSchema:
    """What a segment or table of Arrow ``schema`` holds, in ``LogSchema``'s words."""
    output = column_kind(schema.field("output").type) if "output" in schema.names else None
    inputs = schema.field("inputs").type if "inputs" in schema.names else pa.struct([])
    features = {f.name: _feature_kind(f.type) for f in inputs} if pa.types.is_struct(inputs) else {}
    return LogSchema(
        output=output, features={name: kind for name, kind in features.items() if kind}
    )


def _batch_schema(batch: PredictionBatch) -> LogSchema:
    """What ``batch``'s rows will hold in the log, as ``to_record_batch`` converts them.

    A feature missing in every row tells nothing: its column is a string
    column for any values that came as objects (a nullable boolean's too).
    """
    columns = {name: _column([batch.inputs[name]]) for name in batch.inputs}
    features = {
        name: _feature_kind(column.type)
        for name, column in columns.items()
        if column.null_count < len(column)
    }
    return LogSchema(
        output=column_kind(_column([batch.outputs]).type),
        features={name: kind for name, kind in features.items() if kind},
    )


def column_kind(kind: pa.DataType) -> str | None:
    """What an ``output`` column of Arrow type ``kind`` holds a row, in ``output_kind``'s words.

    The types are those ``_column`` writes; ``None`` for another.
    """
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return SEVERAL_VALUES
    word = _value_word(kind)
    return one_a_row(word) if word else None


def _feature_kind(kind: pa.DataType) -> str | None:
    """What a feature's field of Arrow type ``kind`` holds, in ``LogSchema``'s words.

    The types are those ``_column`` writes, date-times as timestamps; ``None`` for another.
    """
    if pa.types.is_timestamp(kind):
        return "date-time"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return "list"
    return _value_word(kind)


def _value_word(kind: pa.DataType) -> str | None:
    if pa.types.is_floating(kind) or pa.types.is_integer(kind):
        return "number"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    return None


def _feature_columns(batches: Sequence[PredictionBatch], features: list[str]) -> list[pa.Array]:
    """The feature columns of ``batches``: from their matrices in one call when all have one."""
    matrices = [b.inputs.matrix for b in batches if isinstance(b.inputs, MatrixColumns)]
    if len(matrices) < len(batches):
        return [_column([batch.inputs[name] for batch in batches]) for name in features]
    matrix = matrices[0] if len(matrices) == 1 else np.concatenate(matrices)
    return [pa.array(matrix[:, i], pa.float64(), from_pandas=True) for i in range(len(features))]


def _repeated(
    batches: Sequence[PredictionBatch], field: str, rows: pa.Array, kind: pa.DataType
) -> pa.Array:
    """A batch-level field once per row, as an Arrow array of type ``kind``.

    ``rows`` holds, for each row, the index of its batch: the field is converted
    once per batch and spread over the rows by Arrow, not by a list per row.
    """
    return pa.array([getattr(batch, field) for batch in batches], kind).take(rows)


def _joined(batches: Sequence[PredictionBatch], field: str) -> list[Any]:  # Any: a field
    values: list[Any] = []
    for batch in batches:
        chunk = getattr(batch, field)
        values.extend(chunk.tolist() if isinstance(chunk, np.ndarray) else chunk)
    return values


def to_record_batch(batches: Sequence[PredictionBatch]) -> pa.RecordBatch:
    """Batches of one deployment with the same features as one record batch of the log's columns.

    Converting many at once costs a few Arrow calls per column, not per batch.
    Batches of failed requests (``error`` set) give the columns of failures.
    """
    counts = [len(batch.request_ids) for batch in batches]
    rows = pa.array(np.repeat(np.arange(len(batches), dtype=np.int32), counts))
    micros = np.rint(np.asarray(_joined(batches, "times"), dtype=np.float64) * 1e6)
    times = pa.array(micros.astype(np.int64), pa.timestamp("us", tz="UTC"))
    common = {
        "request_id": pa.array(_joined(batches, "request_ids"), pa.string()),
        "row_index": pa.array(_joined(batches, "row_indexes"), pa.int32()),
        "time": times,
        _PARTITION: times.cast(pa.date32()),
        "deployment": _repeated(batches, "deployment", rows, pa.string()),
        "model": _repeated(batches, "model", rows, pa.string()),
        "model_version": _repeated(batches, "model_version", rows, pa.int32()),
        "variant": _repeated(batches, "variant", rows, pa.string()),
        "shadow": _repeated(batches, "shadow", rows, pa.bool_()),
        "latency_ms": pa.array(_joined(batches, "latency_ms"), pa.float64()),
    }
    if batches and batches[0].error is not None:
        common["error"] = _repeated(batches, "error", rows, pa.string())
        return pa.RecordBatch.from_pydict(common)
    features = list(batches[0].inputs) if batches else []
    inputs = (
        pa.StructArray.from_arrays(_feature_columns(batches, features), names=features)
        if features
        else pa.array([{}] * len(times), pa.struct([]))
    )
    return pa.RecordBatch.from_pydict(
        {**common, "inputs": inputs, "output": _column([b.outputs for b in batches])}
    )


def copies_record(
    copies: pa.RecordBatch,
    *,
    deployment: str,
    model: str,
    model_version: int,
    variant: str,
    features: Sequence[str],
    latency_ms: np.ndarray,
    outputs: np.ndarray,
) -> pa.RecordBatch:
    """The log's rows of ``copies`` a shadow variant predicted, as ``to_record_batch`` has them.

    ``copies`` holds the ``request_id``, ``row_index``, ``time`` and
    ``inputs`` columns of answered rows, as the log wrote them (a shadow's
    tee sends them on). They are kept as they are, ``inputs`` narrowed to the
    shadow's ``features``: no value becomes a Python object on the way.
    """
    count = copies.num_rows
    times = copies.column("time")
    logged = copies.column("inputs")
    assert isinstance(logged, pa.StructArray), "the log's inputs are a struct"
    inputs = (
        pa.StructArray.from_arrays([logged.field(name) for name in features], names=features)
        if features
        else pa.array([{}] * count, pa.struct([]))
    )
    return pa.RecordBatch.from_pydict(
        {
            "request_id": copies.column("request_id"),
            "row_index": copies.column("row_index"),
            "time": times,
            _PARTITION: times.cast(pa.date32()),
            "deployment": pa.repeat(pa.scalar(deployment, pa.string()), count),
            "model": pa.repeat(pa.scalar(model, pa.string()), count),
            "model_version": pa.repeat(pa.scalar(model_version, pa.int32()), count),
            "variant": pa.repeat(pa.scalar(variant, pa.string()), count),
            "shadow": pa.repeat(pa.scalar(True, pa.bool_()), count),  # noqa: FBT003  (a value)
            "latency_ms": pa.array(latency_ms, pa.float64()),
            "inputs": inputs,
            "output": _column([outputs]),
        }
    )


def read_predictions(
    *,
    spool_dir: Path,
    tables: TableArea,
    deployment: str,
    since: datetime | None = None,
    until: datetime | None = None,
    variant: str | None = None,
    errors: bool = False,
    ordered: bool = True,
) -> pa.Table:
    """Every logged prediction of ``deployment`` in ``[since, until)``, oldest first.

    Rows still in spool segments (of live or dead processes) are included,
    unless their segment already rolled into the table. ``errors=True`` keeps
    the rows of failed requests (and the ``error`` column, null for answers).
    ``ordered=False`` skips the sort (a reader that only needs time order
    of a table it will sort by time itself saves a pass over every column).
    """
    from deltalake import DeltaTable  # noqa: PLC0415  (heavy; on first use)
    from deltalake.exceptions import TableNotFoundError  # noqa: PLC0415

    pending = {}
    for path in _segment_paths(spool_dir, deployment):
        found = read_segment(path)
        if found is not None:
            pending[path.stem] = found
    uri = tables.table_uri(log_table_name(deployment))
    parts: list[pa.Table] = []
    try:
        delta = DeltaTable(uri, storage_options=tables.storage_options() or None)
    except TableNotFoundError:
        delta = None
    condition = _condition(since, until, variant)
    if delta is not None:
        dataset = delta.to_pyarrow_dataset()
        parts.append(dataset.to_table(filter=condition))
        pending = {k: v for k, v in pending.items() if not delta.transaction_version(k)}
    parts.extend(
        table.filter(condition) if condition is not None else table for table in pending.values()
    )
    if not parts:
        return _empty()
    combined = pa.concat_tables(parts, promote_options="permissive")
    if not errors and "error" in combined.column_names:
        combined = combined.filter(pc.is_null(combined.column("error"))).drop_columns(["error"])
        if "inputs" not in combined.column_names:  # only failures were logged
            return _empty()
    if not ordered:
        return combined
    return combined.sort_by(
        [("time", "ascending"), ("request_id", "ascending"), ("row_index", "ascending")]
    )


def logged_request_ids(
    *, spool_dir: Path, tables: TableArea, deployment: str, ids: pa.Array
) -> set[str]:
    """Which of ``ids`` the log holds an answered prediction for (failed requests do not count).

    Reads only the ``request_id`` and ``error`` columns, with the ids pushed
    into the Delta scan as a filter (files and row groups whose statistics
    rule them out are skipped), and the spool segments not yet rolled into it.
    """
    from deltalake import DeltaTable  # noqa: PLC0415  (heavy; on first use)
    from deltalake.exceptions import TableNotFoundError  # noqa: PLC0415

    wanted = pc.field("request_id").isin(ids)
    parts: list[pa.Table] = []
    # The segments before the table: one rolled over in between is then in the table read
    # after (and skipped here), never in neither.
    pending: dict[str, pa.Table] = {}
    for path in _segment_paths(spool_dir, deployment):
        found = read_segment(path)
        if found is not None:
            pending[path.stem] = found.select(_id_columns(found.schema)).filter(wanted)
    try:
        delta = DeltaTable(
            tables.table_uri(log_table_name(deployment)),
            storage_options=tables.storage_options() or None,
        )
    except TableNotFoundError:
        delta = None
    if delta is not None:
        dataset = delta.to_pyarrow_dataset()
        parts.append(dataset.to_table(columns=_id_columns(dataset.schema), filter=wanted))
        pending = {k: v for k, v in pending.items() if not delta.transaction_version(k)}
    parts.extend(pending.values())
    known: set[str] = set()
    for part in parts:
        answered = (
            part.filter(pc.is_null(part.column("error"))) if "error" in part.column_names else part
        )
        known.update(answered.column("request_id").to_pylist())
    return known


def _id_columns(schema: pa.Schema) -> list[str]:
    return ["request_id", *(["error"] if "error" in schema.names else [])]


def _segment_paths(spool_dir: Path, deployment: str) -> list[Path]:
    return sorted((spool_dir / check_deployment_name(deployment)).glob(f"*{SUFFIX}"))


def _condition(
    since: datetime | None, until: datetime | None, variant: str | None
) -> pc.Expression | None:
    terms = []
    if since is not None:
        start = aware_utc(since)
        terms += [pc.field(_PARTITION) >= start.date(), pc.field("time") >= start]
    if until is not None:
        end = aware_utc(until)
        terms += [pc.field(_PARTITION) <= end.date(), pc.field("time") < end]
    if variant is not None:
        terms.append(pc.field("variant") == variant)
    if not terms:
        return None
    condition = terms[0]
    for term in terms[1:]:
        condition = condition & term
    return condition


def aware_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; ``ValidationFailed`` when it has no time zone."""
    if moment.tzinfo is None:
        raise ValidationFailed(
            f"{moment.isoformat()} has no time zone; give an aware datetime such as "
            "datetime(2030, 1, 1, tzinfo=UTC)"
        )
    return moment.astimezone(UTC)


def _empty() -> pa.Table:
    batch = to_record_batch(
        [
            PredictionBatch(
                deployment="none",
                model="none",
                model_version=0,
                variant="none",
                shadow=False,
                request_ids=[],
                row_indexes=[],
                times=[],
                latency_ms=[],
                inputs={},
                outputs=[],
            )
        ]
    )
    return pa.Table.from_batches([batch])
