"""The background writer: logging never waits on the database, and nothing logged is dropped.

Log calls append to a bounded in-memory buffer and return. One thread per
workspace takes everything buffered at least every ``flush_interval_s`` (sooner
when the buffer is half full or someone flushes), groups it by run and writes
one ``log_batch`` per run. The same thread heartbeats the runs that are live in
this process. A full buffer makes log calls wait for the writer (backpressure),
never drop. A failed write is retried; errors reach the caller at its next log
call, flush or finish instead of vanishing in the thread.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from typing import Protocol, TypeAlias

from mlcycle.clock import Clock
from mlcycle.errors import AlreadyExists, BackendUnavailable, NotFound, ValidationFailed
from mlcycle.ids import RunId
from mlcycle.store import MetricLog, MetricPoint, RunLog

__all__ = ["BatchWriter", "Item"]

METRIC, PARAM, TAG = 0, 1, 2
Item: TypeAlias = tuple[int, RunId, str, object, int, float]
"""(kind, run id, key, value, step, timestamp): cheap to make on the caller's thread."""

FAILURES_TO_REPORT = 3
"""Consecutive failed writes before log calls and flushes raise; fewer are retried quietly."""
_WAIT_SLICE_S = 1.0
_REFUSED = (ValidationFailed, NotFound, AlreadyExists)
"""Errors about the data itself: retrying cannot help, so they are reported, the batch dropped."""


class _Store(MetricLog, RunLog, Protocol):
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
        self._failures = 0
        self._last_failure: BaseException | None = None
        self._errors: list[BaseException] = []
        self._live: set[RunId] = set()
        self._flush_wanted = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self._beat_at = -math.inf

    def put(self, item: Item) -> None:
        """Buffer one value; waits while the buffer is full."""
        with self._lock:
            if self._errors or self._failures >= FAILURES_TO_REPORT:
                self._raise_errors()
            while self._unwritten >= self._capacity:
                self._wait_for_space()
            self._items.append(item)
            self._unwritten += 1
            if len(self._items) == self._high:
                self._wake.notify()

    def put_many(self, items: Iterable[Item]) -> None:
        """Buffer several values, waiting for room as needed."""
        for item in items:
            self.put(item)

    def _wait_for_space(self) -> None:
        self._wake.notify()
        if self._thread is None or not self._thread.is_alive():
            raise BackendUnavailable(
                "the mlcycle writer thread is not running; reopen the workspace"
            )
        self._changed.wait(timeout=_WAIT_SLICE_S)
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
        """Write ``batch``; returns the items to retry."""
        by_run: dict[RunId, list[Item]] = {}
        for item in batch:
            by_run.setdefault(item[1], []).append(item)
        retry: list[Item] = []
        for run_id, items in by_run.items():
            try:
                self._log_batch(run_id, items)
            except _REFUSED as exc:
                exc.add_note(f"mlcycle could not store {len(items)} values logged to run {run_id}")
                with self._lock:
                    self._errors.append(exc)
            except Exception as exc:  # noqa: BLE001  (the store may be unreachable: kept, retried)
                self._last_failure = exc
                retry.extend(items)
        return retry

    def _log_batch(self, run_id: RunId, items: list[Item]) -> None:
        metrics: list[MetricPoint] = []
        params: dict[str, str] = {}
        tags: dict[str, str] = {}
        for kind, _run, key, value, step, timestamp in items:
            if kind == METRIC:
                metrics.append(MetricPoint(key, value, step, timestamp))  # type: ignore[arg-type]
            elif kind == PARAM:
                params[key] = str(value)
            else:
                tags[key] = str(value)
        self._store.log_batch(run_id, metrics=metrics, params=params or None, tags=tags or None)

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
