"""A shadow variant's process: it predicts and logs the copies its server sends.

The server (``ShadowProcess``) starts this interpreter running ``main``, at
the idle CPU priority, with two sockets: control (a hello, then tallies) and
copies (Arrow IPC streams of the log's ``request_id, row_index, time,
inputs`` columns). It loads the same model version through the registry,
reads the logged inputs its model takes by name (a shadow whose inputs
differ from the answering variant's reads the ones it needs; one the log
does not hold fails those copies), predicts each message in parts with
short pauses between (``_PAUSE_S``), logs the copies to a prediction log of
its own (the logged columns it read are logged again as they are,
``copies_record``) and, at most every ``_TALLY_S``, sends what the serving
process's metrics need, already added up: the rows of each predict call,
and the buckets and sums of the copies' lags and predicted values. A copy's
lag is the time from its request's arrival (its logged ``time``) until it
was predicted, by the server's clock. At the copies socket's end it
predicts what it read, writes out its log and exits.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import select
import signal
import socket
import struct
import time
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.errors import ValidationFailed
from mlcycle.serve._metrics import Observed, tally
from mlcycle.serve._records import copies_record
from mlcycle.serve._rows import NUMERIC_TYPES, Rows, check_column

if TYPE_CHECKING:
    from mlcycle.registry import ColumnSpec
    from mlcycle.serve._model import ServedModel
    from mlcycle.serve._predlog import PredictionLog
    from mlcycle.serve._rows import Schema
    from mlcycle.serve._shadow import ShadowLog

__all__ = ["FRAME", "HEAD", "Reply", "Sums", "framed", "main", "rows_of"]

HEAD = struct.Struct("!Qd")
"""A copy message's head: the size of its Arrow stream, and how far the server's clock is
ahead of the system's (``time.time()``; a simulated clock's offset), for the copies' lags."""
FRAME = struct.Struct("!Q")
"""A control message's head (the hello, the answer to it, a tally): the size of its pickle."""
_CHUNK_ROWS = 128
"""The rows of each predict call of the shadow's process (a request is never cut)."""
_PAUSE_S = 0.002
"""The shadow's process's pause between its predict calls on one message of copies.

A round of the log's writer at 11,000 requests/s holds some 2,300 copies.
Predicted and logged at once, they were a burst of a few milliseconds every
0.2 s on the second core, during which the worker's requests ran slower (the
two cores share caches): the primary's p99 read 1.15x and 1.22x that without
a shadow. Spread out in parts of ``_CHUNK_ROWS`` rows with this pause, 1.01x,
1.09x, 1.10x, 1.02x and 1.06x (2026-12-05,
``docs/serving-benchmark-history.md``). A process that falls behind does not
pause: the pause ends as soon as more copies wait on its socket. Spreading a
message's parts over most of the time until the next message (1.08x), or
moving the process to its worker's CPU before each part (1.02x and 1.09x),
did no better on a slower machine where this read 1.01x, 1.05x, 0.98x and
1.02x, and with 64 pairs of runs a phase 0.99x, 1.03x and 1.04x.
"""
_TALLY_S = 1.0
"""How often, at most, the process sends what it predicted, added up (``Tally``).

It sends at once when a copy failed, and after a second without copies
what it has not told yet.
"""
Sums = tuple[int, float, tuple[tuple[int, int], ...]]
"""An ``Observed`` as it travels back from the process (plain tuples pickle fastest)."""
Reply = tuple[list[int], Sums | None, Sums | None, list[str]]
"""``Tally``'s fields, its ``Observed`` as ``Sums``: what the process tells."""
_NICE = 10
"""The nice value of a shadow's process where ``SCHED_IDLE`` is not available."""


def framed(message: object) -> bytes:
    """A control message: its pickle's size, then its pickle."""
    data = pickle.dumps(message, protocol=5)
    return FRAME.pack(len(data)) + data


def main(control_fd: int, copies_fd: int) -> int:
    """Serve one shadow model: load it (told on ``control_fd``), then predict each message of
    copies read from ``copies_fd``, until that socket's end: the serving process closed it
    (it stopped or died)."""
    # Ctrl-C in a terminal reaches the whole process group; the server decides when this
    # process ends (it closes the socket), after the copies it sent are predicted.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = socket.socket(fileno=control_fd)
    copies = socket.socket(fileno=copies_fd)
    hello = _read(control)
    if hello is None:
        return 0
    opener, ref, max_rows, log, lag_bounds = hello
    try:
        from mlcycle.serve._model import load_model  # noqa: PLC0415  (after the hello)

        model = load_model(opener(), ref, max_rows=max_rows)
        sink = None if log is None else log.opener()
    except Exception as exc:  # noqa: BLE001  (any failure is told to the server, which logs it)
        control.sendall(framed(f"{type(exc).__name__}: {exc}"))
        return 1
    # Only now: at the lowest priority from the start, a busy machine starved the imports
    # and the model's load, and with them the deployment change that waited for them.
    _lowest_priority()
    predicting = _Predicting(model, sink, log, lag_bounds)
    try:
        control.sendall(framed("ready"))
        untold: Reply | None = None
        told = time.monotonic()
        pause = functools.partial(_pause_unless_readable, copies)
        while True:
            if select.select([copies], [], [], _TALLY_S)[0]:
                message = _read_copies(copies)
                if message is None:
                    break
                offset, record = message
                untold = _added(untold, predicting.predict(offset, record, pause))
            if untold is not None and (untold[3] or time.monotonic() - told >= _TALLY_S):
                control.sendall(framed(untold))
                untold, told = None, time.monotonic()
        if untold is not None:
            control.sendall(framed(untold))
    finally:
        if sink is not None:
            # Written and synced, its segments are left to a process of normal priority: the
            # worker rolls them into Delta when it closes its own log (a rollover here, at the
            # idle priority, waited for a free core as long as the machine was busy).
            sink.flush()
    return 0


class _Predicting:
    """The shadow's process predicting and logging messages of copies."""

    def __init__(
        self,
        model: ServedModel,
        sink: PredictionLog | None,
        log: ShadowLog | None,
        lag_bounds: Sequence[float] | None,
    ) -> None:
        self.model = model
        self.sink = sink
        self.log = log
        self.lag_bounds = lag_bounds

    def predict(self, offset: float, record: pa.RecordBatch, pause: Callable[[], None]) -> Reply:
        """Predict and log a message of copies, ``record``; what to tell of them.

        Its rows are read, logged and added up at once, and predicted in
        parts (``_chunks``), with a ``pause`` before each part but the first.
        A part whose predict call fails is predicted copy by copy. ``offset``
        is how far the server's clock is ahead of this one's.
        """
        starts = _request_starts(record.column("request_id"))
        try:
            rows = rows_of(self.model.schema, record.column("inputs"))
        except ValidationFailed as exc:
            return [], None, None, [f"ValidationFailed: {exc}"] * len(starts)
        times = record.column("time").cast(pa.int64()).to_numpy() / 1e6 - offset
        lags = np.empty(record.num_rows)
        parts: list[tuple[int, int, np.ndarray]] = []
        failed: list[str] = []
        for start, stop in _chunks(starts, record.num_rows):
            if start:
                pause()
            try:
                parts.append((start, stop, self.model.predict(rows.slice(start, stop))))
            except Exception:  # noqa: BLE001  (a model may raise anything; each copy is tried alone)
                within = starts[(starts >= start) & (starts < stop)].tolist()
                for first, end in pairwise([*within, stop]):
                    try:
                        parts.append((first, end, self.model.predict(rows.slice(first, end))))
                    except Exception as exc:  # noqa: BLE001
                        failed.append(f"{type(exc).__name__}: {exc}")
            lags[start:stop] = time.time() - times[start:stop]
        if not parts:
            return [], None, None, failed
        outputs = np.concatenate([part[2] for part in parts])
        if self.sink is not None and self.log is not None:
            self.sink.append_record(self.log.deployment, self._logged(record, parts, outputs, lags))
        return self._told(starts, parts, outputs, lags, failed)

    def _told(
        self,
        starts: np.ndarray,
        parts: list[tuple[int, int, np.ndarray]],
        outputs: np.ndarray,
        lags: np.ndarray,
        failed: list[str],
    ) -> Reply:
        """``Tally``'s fields for the predicted ``parts`` (their ``outputs`` in one array): a
        lag for each copy (its first row)."""
        calls = [stop - start for start, stop, _ in parts]
        first_rows = starts
        if failed:
            predicted = np.zeros(len(starts), dtype=bool)
            for start, stop, _ in parts:
                predicted |= (starts >= start) & (starts < stop)
            first_rows = starts[predicted]
        lagged = None
        if self.lag_bounds is not None and len(first_rows):
            lagged = _sums(tally(lags[first_rows], self.lag_bounds))
        values = None
        if outputs.ndim == 1 and outputs.dtype.kind in "fiub":
            values = _sums(tally(outputs.astype(np.float64, copy=False)))
        return calls, lagged, values, failed

    def _logged(
        self,
        record: pa.RecordBatch,
        parts: list[tuple[int, int, np.ndarray]],
        outputs: np.ndarray,
        lags: np.ndarray,
    ) -> pa.RecordBatch:
        """The log's rows for the ``parts`` of ``record`` predicted (each its first row, past
        its last, outputs; ``outputs`` all of theirs in one array); their latency is each
        copy's lag."""
        assert self.log is not None, "only when logging"
        if len(outputs) == record.num_rows:  # every copy predicted (the parts are in order)
            copies, latencies = record, lags
        else:
            copies = pa.concat_batches([record.slice(a, b - a) for a, b, _ in parts])
            latencies = np.concatenate([lags[a:b] for a, b, _ in parts])
        return copies_record(
            copies,
            deployment=self.log.deployment,
            model=self.model.name,
            model_version=self.model.version,
            variant=self.log.variant,
            features=self.model.schema.names,
            latency_ms=latencies * 1000,
            outputs=outputs,
        )


def rows_of(schema: Schema, inputs: pa.Array) -> Rows:
    """The rows a model of ``schema`` takes, read by name from the log's ``inputs`` column.

    ``ValidationFailed`` when the log holds no column the model takes (the
    answering variant does not take it), or one of another kind.
    """
    logged = {field.name for field in inputs.type} if pa.types.is_struct(inputs.type) else set()
    missing = [name for name in schema.names if name not in logged]
    if missing:
        raise ValidationFailed(
            f"the prediction log holds no input {', '.join(map(repr, missing))}, which the "
            "shadow takes: the answering variant does not take it, so requests never carry it"
        )
    assert isinstance(inputs, pa.StructArray), "a struct: it has the fields"
    columns = {spec.name: _logged_column(spec, inputs.field(spec.name)) for spec in schema.inputs}
    if schema.numeric:
        matrix = np.column_stack([columns[name] for name in schema.names])
        return Rows(len(inputs), schema.names, matrix=matrix)
    return Rows(len(inputs), schema.names, columns=columns)


def _logged_column(spec: ColumnSpec, values: pa.Array) -> np.ndarray:
    """One logged feature as the column a request of it would have decoded to."""
    if spec.type in NUMERIC_TYPES:
        return check_column(spec, values.to_numpy(zero_copy_only=False))
    if spec.type == "datetime" and pa.types.is_timestamp(values.type):
        return np.asarray(values.cast(pa.timestamp("ns")).to_numpy(zero_copy_only=False))
    return check_column(spec, values.to_pylist())


def _chunks(starts: np.ndarray, count: int) -> list[tuple[int, int]]:
    """``count`` rows in parts, cut at the first request start (of ``starts``) at or past each
    multiple of ``_CHUNK_ROWS`` rows (a request is never cut)."""
    wanted = np.searchsorted(starts, np.arange(_CHUNK_ROWS, count, _CHUNK_ROWS))
    cuts = np.unique(starts[wanted[wanted < len(starts)]]).tolist()
    bounds = [0, *(cut for cut in cuts if cut), count]
    return list(pairwise(bounds))


def _pause_unless_readable(sock: socket.socket) -> None:
    """Wait ``_PAUSE_S``, or not at all when ``sock`` has more to read (or its end)."""
    select.select([sock], [], [], _PAUSE_S)


def _request_starts(ids: pa.Array) -> np.ndarray:
    """The first row of each request (a request's rows are logged together, in order)."""
    if len(ids) < 2:
        return np.zeros(len(ids), dtype=np.int64)
    changed = pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))
    return np.concatenate(([0], np.flatnonzero(changed.to_numpy(zero_copy_only=False)) + 1))


def _added(before: Reply | None, reply: Reply) -> Reply:
    """``before`` and ``reply`` added up."""
    if before is None:
        return reply
    calls, lags, values, failed = reply
    return (
        before[0] + calls,
        _sums_added(before[1], lags),
        _sums_added(before[2], values),
        before[3] + failed,
    )


def _sums_added(before: Sums | None, sums: Sums | None) -> Sums | None:
    """Two ``Sums`` of the same histogram or summary added up; either may be ``None``."""
    if before is None or sums is None:
        return sums if before is None else before
    buckets = dict(before[2])
    for slot, count in sums[2]:
        buckets[slot] = buckets.get(slot, 0) + count
    return before[0] + sums[0], before[1] + sums[1], tuple(sorted(buckets.items()))


def _sums(observed: Observed) -> Sums:
    return observed.count, observed.total, observed.buckets


def _lowest_priority() -> None:
    """Run only when a core has nothing else to do (``SCHED_IDLE``), so a request never waits.

    With a nice value alone, a shadow woken by its batch took the serving
    process's core and held it for its whole predict call, and requests
    arriving meanwhile waited. Every thread of the process is moved (Linux
    schedules threads, and the log's writer and roller already run). Where
    ``SCHED_IDLE`` is not available (not Linux), the process is niced instead.
    """
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is None:
        os.nice(_NICE)
        return
    for thread in Path("/proc/self/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setscheduler(int(thread.name), policy, os.sched_param(0))


def _read_copies(sock: socket.socket) -> tuple[float, pa.RecordBatch] | None:
    """The next message of copies (the server clock's offset, and the copies), or ``None`` at
    the end."""
    head = _read_exactly(sock, HEAD.size)
    if head is None:
        return None
    size, offset = HEAD.unpack(head)
    body = _read_exactly(sock, size)
    if body is None:
        return None
    return offset, pa.ipc.open_stream(pa.py_buffer(body)).read_next_batch()


def _read(sock: socket.socket) -> Any:  # Any: unpickled
    """The next control message, or ``None`` once the other end is closed."""
    head = _read_exactly(sock, FRAME.size)
    data = None if head is None else _read_exactly(sock, FRAME.unpack(head)[0])
    return None if data is None else pickle.loads(data)  # noqa: S301  (the serving process)


def _read_exactly(sock: socket.socket, size: int) -> bytearray | None:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        count = sock.recv_into(view[got:])
        if count == 0:
            return None
        got += count
    return buffer
