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

The rows' columns are ``_records``'s; reading them back is ``_predictions``'s.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from mlcycle.errors import ValidationFailed
from mlcycle.serve._predictions import log_table_name, spool_schemas, table_schema
from mlcycle.serve._records import (
    PARTITION,
    batch_schema,
    first_known,
    schema_words,
    to_record_batch,
)
from mlcycle.serve._segments import Segment, claim_orphans, read_segment
from mlcycle.serve._sink import PredictionBatch
from mlcycle.store import check_deployment_name

if TYPE_CHECKING:
    from mlcycle.serve._deployments import LogSchema
    from mlcycle.settings import Settings
    from mlcycle.store import TableArea

__all__ = ["FAILED_SUFFIX", "PredictionLog", "Tee", "spool_dir"]

_log = logging.getLogger("mlcycle.serve.predlog")
_COMMIT_RETRIES = 20
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
        found = [table_schema(deployment, self.tables)]
        features: set[str] = set()  # a batch of none but these tells nothing new
        queued = False
        for batch in reversed(list(self._pending)):  # list(): one step under the GIL
            if batch.deployment != deployment or batch.error is not None:
                continue
            if isinstance(batch, _Ready):
                found.append(schema_words(batch.record.schema))
            elif not queued or not features.issuperset(batch.inputs):
                found.append(batch_schema(batch))
                features.update(batch.inputs)
                queued = True
        found += [
            schema_words(schema) for name, schema in list(self._segments) if name == deployment
        ]
        return first_known([*found, *spool_schemas(self.spool_dir, deployment)])

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
                    partition_by=[PARTITION],
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
