"""The background writer: logging never waits on the database, and nothing logged is dropped.

Run starts, log calls and run ends append to one bounded, ordered in-memory
buffer and return. One thread per workspace takes everything buffered at least
every ``flush_interval_s`` (sooner when the buffer is half full or someone
flushes) and writes it as one ``WriteBatch``: one transaction per cycle, however
many runs it touches (ADR 0005). The same thread heartbeats the runs that are
live in this process. A full buffer makes log calls wait for the writer
(backpressure), never drop. A batch the store refuses is split, per run and then
per operation, so one run's bad data never costs another run its values; a
store that cannot be reached keeps everything buffered and retried. Errors
reach the caller at its next log call, flush or finish, or at close, instead
of vanishing in the thread.
"""

from __future__ import annotations

import gc
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol, TypeAlias

from mlcycle.clock import Clock
from mlcycle.errors import AlreadyExists, BackendUnavailable, NotFound, ValidationFailed
from mlcycle.ids import RunId
from mlcycle.store import PointTuple, RunLog, RunValues, WriteBatch, WriteOperation

__all__ = ["BatchWriter", "Item", "collector_paused"]

METRIC, PARAM, TAG, START, END = 0, 1, 2, 3, 4
Item: TypeAlias = tuple[int, RunId, str, object, int, float]
"""(kind, run id, key, value, step, timestamp): cheap to make on the caller's thread.

A ``START`` item carries its ``RunStart`` and an ``END`` item its ``RunEnd`` as the value.
"""

FAILURES_TO_REPORT = 3
"""Consecutive failed writes before log calls and flushes raise; fewer are retried quietly."""
_WAIT_SLICE_S = 1.0
_REFUSED = (ValidationFailed, NotFound, AlreadyExists, TypeError)
"""Errors about the data itself: retrying cannot help, so they are reported, the part dropped."""


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while logging makes many small objects.

    Buffered items survive, so with pandas or scikit-learn loaded (a large
    heap) they set off full collections that cost more than the logging: a
    ``log_metrics`` of 1,000 keys took 10 ms instead of 1 ms, and writing 10,000
    buffered values 180 ms instead of 50 ms. Log calls and the writer make
    tuples, strings and numbers, which form no cycles; the collector runs as
    usual once it is back on.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _Store(RunLog, Protocol):
    """What the writer needs of a metadata store."""


class BatchWriter:
    """Buffers what runs log and writes it in batches from one background thread."""

    def __init__(
        self,
        store: _Store,
        *,
        clock: Clock,
        capacity: int,
        flush_interval_s: float,
        heartbeat_interval_s: float,
    ) -> None:
        self._store = store
        self._clock = clock
        self._capacity = capacity
        self._high = max(1, capacity // 2)
        self._interval = flush_interval_s
        self._beat_every = heartbeat_interval_s
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._changed = threading.Condition(self._lock)
        self._items: list[Item] = []
        self._unwritten = 0
        self._cycle = 0
        self._clean_cycle = 0
        self._settled = 0
        self._failures = 0
        self._last_failure: BaseException | None = None
        self._errors: list[BaseException] = []
        self._live: set[RunId] = set()
        self._flush_wanted = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self._beat_at = -math.inf

    def put(self, item: Item, *, check: bool = True) -> None:
        """Buffer one item; waits while the buffer is full.

        Unless ``check`` is false, an error of an earlier write is raised
        instead (a run's end is buffered even then, and the error raised after).
        """
        with self._lock:
            if check and (self._errors or self._failures >= FAILURES_TO_REPORT):
                self._raise_errors()
            while self._unwritten >= self._capacity:
                self._wait_for_space(check=check)
            self._items.append(item)
            self._unwritten += 1
            if len(self._items) == self._high:
                self._wake.notify()

    def put_many(self, items: Sequence[Item]) -> None:
        """Buffer several items, at once when there is room, else waiting for it as needed."""
        with self._lock:
            if self._errors or self._failures >= FAILURES_TO_REPORT:
                self._raise_errors()
            if self._unwritten + len(items) <= self._capacity:
                before = len(self._items)
                self._items.extend(items)
                self._unwritten += len(items)
                if before < self._high <= len(self._items):
                    self._wake.notify()
                return
        for item in items:
            self.put(item)

    def _wait_for_space(self, *, check: bool) -> None:
        self._wake.notify()
        if self._thread is None or not self._thread.is_alive():
            raise BackendUnavailable(
                "the mlcycle writer thread is not running; reopen the workspace"
            )
        self._changed.wait(timeout=_WAIT_SLICE_S)
        if check and (self._errors or self._failures >= FAILURES_TO_REPORT):
            self._raise_errors()

    def wake(self) -> None:
        """Have the writer write what is buffered now, without waiting for it."""
        with self._lock:
            self._flush_wanted = True
            self._wake.notify()

    def settle(self, *, timeout_s: float = 60.0) -> None:
        """Wait until what is buffered now has been tried once; raises nothing.

        Reads call this so they see what this process logged; what went wrong
        is raised at the next log call, flush, finish or close.
        """
        with self._lock:
            if not self._alive() or self._unwritten == 0:
                return
            target = self._cycle + 1
            self._flush_wanted = True
            self._wake.notify()
            waited = 0.0
            while self._settled < target and self._alive() and waited < timeout_s:
                self._changed.wait(timeout=_WAIT_SLICE_S)
                waited += _WAIT_SLICE_S

    def raise_errors(self) -> None:
        """Raise what went wrong writing, if anything is known to have gone wrong."""
        with self._lock:
            if self._errors or self._failures >= FAILURES_TO_REPORT:
                self._raise_errors()

    def _raise_errors(self) -> None:
        if self._errors:
            raise self._errors.pop(0)
        raise BackendUnavailable(
            f"mlcycle cannot write logged values to the metadata store "
            f"({self._failures} attempts failed: {self._last_failure}); {self._unwritten} values "
            "are kept in memory and retried. Check that the database is reachable"
        ) from self._last_failure

    def register(self, run_id: RunId) -> None:
        """Heartbeat ``run_id`` from now on; starts the thread on first use."""
        with self._lock:
            self._live.add(run_id)
            if self._thread is None:
                self._closing = False
                self._thread = threading.Thread(
                    target=self._run, name="mlcycle-writer", daemon=True
                )
                self._thread.start()

    def unregister(self, run_id: RunId) -> None:
        """Stop heartbeating ``run_id``."""
        with self._lock:
            self._live.discard(run_id)

    def live_runs(self) -> list[RunId]:
        """The runs this writer heartbeats."""
        with self._lock:
            return sorted(self._live)

    def heartbeat_if_due(self) -> None:
        """Heartbeat the live runs now, from the caller's thread, unless it was done lately."""
        if self._clock.time() - self._beat_at >= self._beat_every:
            live = self.live_runs()
            if live:
                self._store.heartbeat(live, at=self._clock.now())
                self._beat_at = self._clock.time()

    def flush(self, *, timeout_s: float | None = None) -> None:
        """Write everything buffered so far; raise what went wrong writing it."""
        with self._lock:
            if self._thread is None or (self._unwritten == 0 and not self._failures):
                if self._errors:
                    self._raise_errors()
                return
            target = self._cycle + 1
            failures_before = self._failures
            self._flush_wanted = True
            self._wake.notify()
            waited = 0.0
            while self._clean_cycle < target:
                if self._failures - failures_before >= FAILURES_TO_REPORT or not self._alive():
                    self._raise_errors()
                if timeout_s is not None and waited >= timeout_s:
                    raise BackendUnavailable(
                        f"mlcycle could not flush logged values within {timeout_s} s; "
                        f"{self._unwritten} are still buffered"
                    )
                self._changed.wait(timeout=_WAIT_SLICE_S)
                waited += _WAIT_SLICE_S
            if self._errors:
                self._raise_errors()

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self, *, timeout_s: float = 30.0) -> int:
        """Write what is buffered and stop the thread; returns how many values stayed unwritten."""
        with self._lock:
            thread = self._thread
            self._closing = True
            self._wake.notify()
        if thread is not None:
            thread.join(timeout_s)
        with self._lock:
            self._thread = None
            return self._unwritten

    def _run(self) -> None:
        next_beat = self._clock.time() + self._beat_every
        while True:
            with self._lock:
                if not (self._closing or self._flush_wanted or len(self._items) >= self._high):
                    self._wake.wait(timeout=self._interval)
                batch, self._items = self._items, []
                self._flush_wanted = False
                self._cycle += 1
                cycle = self._cycle
                closing = self._closing
                live = sorted(self._live)
            kept = self._write(batch)
            beat_ok = True
            if self._clock.time() >= next_beat:
                next_beat = self._clock.time() + self._beat_every
                beat_ok = self._beat(live)
            failed = self._settle(cycle, batch_size=len(batch), kept=kept, beat_ok=beat_ok)
            if closing and (not failed or self._failures >= FAILURES_TO_REPORT):
                return

    def _settle(self, cycle: int, *, batch_size: int, kept: list[Item], beat_ok: bool) -> bool:
        """Account for a finished cycle; returns whether it failed."""
        with self._lock:
            self._unwritten -= batch_size - len(kept)
            failed = bool(kept) or not beat_ok
            self._settled = cycle
            if failed:
                self._items[:0] = kept
                self._failures += 1
            else:
                self._failures = 0
                self._last_failure = None
                self._clean_cycle = cycle
            self._changed.notify_all()
            if failed and not self._closing:
                self._wake.wait(timeout=self._interval)
            return failed

    def _write(self, batch: list[Item]) -> list[Item]:
        """Write ``batch`` as one ``WriteBatch``; returns the items to retry."""
        if not batch:
            return []
        with collector_paused():
            return self._apply(batch, splits=(_by_run, _by_operation))

    def _apply(self, items: list[Item], *, splits: tuple[_Split, ...]) -> list[Item]:
        """Apply ``items``; when refused, apply their parts one by one to isolate the culprit."""
        try:
            self._store.apply(batch_of(items))
        except BackendUnavailable as exc:  # the store is away: every part would fail alike
            self._last_failure = exc
            return items
        except Exception as exc:  # noqa: BLE001  (kept and retried, or reported below)
            for level, split in enumerate(splits):
                parts = split(items)
                if len(parts) > 1:
                    rest = splits[level + 1 :]
                    return [item for part in parts for item in self._apply(part, splits=rest)]
            if isinstance(exc, _REFUSED):
                exc.add_note(f"mlcycle could not store {_describe(items)} of run {items[0][1]}")
                with self._lock:
                    self._errors.append(exc)
                return []
            self._last_failure = exc
            return items
        return []

    def _beat(self, live: list[RunId]) -> bool:
        if not live:
            return True
        try:
            self._store.heartbeat(live, at=self._clock.now())
        except Exception as exc:  # noqa: BLE001  (reported like a failed write)
            self._last_failure = exc
            return False
        self._beat_at = self._clock.time()
        return True


_Split: TypeAlias = Callable[[list[Item]], list[list[Item]]]
_Gathered: TypeAlias = tuple[int, list[PointTuple], dict[str, str], dict[str, str]]
"""Where a run's values go in the batch's operations, and the values gathered so far."""


def _by_run(items: list[Item]) -> list[list[Item]]:
    """The items of each run, runs in the order they first appear."""
    parts: dict[RunId, list[Item]] = {}
    for item in items:
        parts.setdefault(item[1], []).append(item)
    return list(parts.values())


def _by_operation(items: list[Item]) -> list[list[Item]]:
    """One run's items cut into its start, its logged values and its end, in order."""
    parts: list[list[Item]] = []
    previous = -1
    for item in items:
        group = item[0] if item[0] in (START, END) else METRIC
        if group != previous or group != METRIC:
            parts.append([])
            previous = group
        parts[-1].append(item)
    return parts


def _describe(items: list[Item]) -> str:
    kinds = {item[0] for item in items}
    if kinds == {START}:
        return "the start"
    if kinds == {END}:
        return "the end"
    return f"{len(items)} logged values"


def batch_of(items: Iterable[Item]) -> WriteBatch:
    """The ``WriteBatch`` of buffered items: starts and ends in order, values merged per run."""
    operations: list[WriteOperation | None] = []
    gathering: dict[RunId, _Gathered] = {}
    gathered: list[tuple[RunId, _Gathered]] = []
    for kind, run_id, key, value, step, timestamp in items:
        if kind >= START:  # a start or an end
            gathering.pop(run_id, None)
            operations.append(value)  # type: ignore[arg-type]  # START/END items carry them
            continue
        found = gathering.get(run_id)
        if found is None:
            found = gathering[run_id] = (len(operations), [], {}, {})
            gathered.append((run_id, found))
            operations.append(None)
        if kind == METRIC:
            found[1].append((key, value, step, timestamp))  # type: ignore[arg-type]
        elif kind == PARAM:
            found[2][key] = value  # type: ignore[assignment]  # params are text by now
        else:
            found[3][key] = value  # type: ignore[assignment]  # tags are text by now
    for run_id, (index, metrics, params, tags) in gathered:
        operations[index] = RunValues(run_id, params=params, tags=tags, points=metrics)
    return WriteBatch([operation for operation in operations if operation is not None])
