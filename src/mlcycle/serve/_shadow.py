"""A shadow variant predicting in a process of its own, so it never takes the server's GIL.

Everything a shadow did in the serving process (its predict calls' Python,
its batching) ran under the same GIL as the event loop that answers, and
even on its own thread it added a third to the primary's median latency at
half the server's rate. Here the serving process keeps only the cheap part:
it queues the rows of each micro-batch its answering variant predicted
(copied into one matrix per message as batches come, not per request), and
every ``_FLUSH_S`` hands the queued rows to the shadow's process as that
matrix over a socket pair: a matrix of numbers as its bytes with the
requests' fields beside it, nothing pickled (``Copies.parts``); other rows
pickled, their arrays' memory sent as it is (``_framed``).
That process (this interpreter running ``main``, at a lower CPU priority)
loads the same model version through the registry, predicts, logs the
copies to a prediction log of its own (``ShadowLog``), and answers that it
is done; at most every ``_TALLY_S`` the answer also carries what the serving
process's metrics need, already added up (``Tally``): the rows
of each predict call, and the buckets and sums of the copies' lags and
predicted values. Sent back as outputs, measured by the serving process,
they cost it 140 µs a message on the event loop (paced at 8,400 requests/s).
Logged by the serving process, a shadow's copies doubled its log's work:
its writer's conversions under the serving process's GIL, and a Delta
rollover (a second of CPU) twice as often.

One batch is in flight at a time. Copies that arrive meanwhile wait in a
queue of ``max_queue`` requests; a copy that does not fit is dropped (shed)
and counted, so a shadow that falls behind never holds the primary back.
When the process dies, its batch in flight is lost, copies are shed until
a new process has loaded the model, and it is started again.
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlcycle.errors import MlcycleError
from mlcycle.serve._metrics import Observed, tally
from mlcycle.serve._rows import Rows, concat_rows
from mlcycle.serve._sink import PredictionBatch, logged_inputs

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mlcycle.registry import ModelRegistry
    from mlcycle.serve._batching import Job
    from mlcycle.serve._model import ServedModel
    from mlcycle.serve._sink import PredictionSink

__all__ = [
    "Copies",
    "CopiesDone",
    "RegistryOpener",
    "ShadowLog",
    "ShadowProcess",
    "SinkOpener",
    "Tally",
]

RegistryOpener = Callable[[], "ModelRegistry"]
"""Opens the project's model registry in the process that calls it; must pickle.

``functools.partial(mlcycle.workspace.open_registry, settings)`` is one.
"""
SinkOpener = Callable[[], "PredictionSink"]
"""Opens the project's prediction log in the process that calls it; must pickle.

``functools.partial(mlcycle.workspace.open_prediction_log, settings)`` is one.
"""

_FLUSH_S = 0.5
"""How long copies gather before they go to the process together.

A message cost the serving process 400 to 650 µs of CPU here (its code runs
too rarely to stay in the caches); at 1,000 requests/s and 50 ms this was
12 µs a request, at 200 ms some 3 µs. Paced at 6,000 requests/s, a shadow
cost the worker 2.8 to 4.4 µs a request in all (offers, messages, answers;
py-spy) with messages of 256 rows, 2.6 to 3.3 µs with 1,024 (``_SEND_ROWS``).
A shadow's predictions are that much later, which nobody waits for
(``mlcycle_serve_shadow_lag_seconds`` shows it).
"""
_SEND_ROWS = 1024
"""Copies of this many rows go without waiting for ``_FLUSH_S`` (at the next idle moment)."""
_FORCE_ROWS = 2048
"""Copies of this many rows go at once, idle moment or not (the queue holds 4,096 by default)."""
_MESSAGE_ROWS = 1024
"""The most rows a message carries (a larger copy goes alone), so it fits the socket's buffer."""
_MATRIX_ROWS = 64
"""The rows a message's matrix has room for at first (``_Message``)."""
_IDLE_S = 0.6
"""How long after the last exchange the next one happens anyway while copies wait.

So the last copies go, and the last answer is read, when no request comes
to carry them. Longer than ``_FLUSH_S``: while requests come, the exchange
happens in their gaps, and the timer never fires.
"""
_TALLY_S = 1.0
"""How often, at most, the process sends what it predicted, added up (``Tally``).

Its other answers say only that it is done with the message (a frame of no
parts, ``_raw_framed([])``).
Reading a ``Tally`` and adding it to the metrics was about 135 µs of a 375 µs
exchange in the worker (a median, paced at 8,500 requests/s; the code runs
too rarely to stay in the caches), for two to ten messages a second. The
shadow's metrics trail by up to this much more; a process that failed on a
copy says so at once. The serving process asks for the rest with a message
of no copies when it closes, and when no exchange came for ``_IDLE_S``.
"""
_START_TIMEOUT_S = 300.0
_EXIT_S = 60.0
"""How long a closing shadow's process may take to predict its last copies, and then to
write out its log and exit, before it is killed."""
_RESTART_S = (1.0, 30.0)
"""The first and the longest wait before a dead shadow process is started again."""
_WARN_EVERY_S = 60.0
_FRAME = struct.Struct("!QI")
"""A message's head: the size of its pickle, and how many buffers follow it (``_framed``)."""
_SIZE = struct.Struct("!Q")
"""The size of each of a frame's out-of-band buffers, after ``_FRAME``."""
_SHAPE = struct.Struct("=QQ")
"""The rows and columns of a message's matrix, sent without pickling (``Copies.parts``)."""
_NUMBERS = "biuf"
"""The kinds of matrix (NumPy's ``dtype.kind``) whose memory goes as it is."""
_Sums = tuple[int, float, tuple[tuple[int, int], ...]]
"""An ``Observed`` as it travels back from the process (plain tuples pickle fastest)."""
_Reply = tuple[float, list[int], _Sums | None, _Sums | None, list[str]]
"""``Tally``'s fields, its ``Observed`` as ``_Sums``: the process's answer with a tally."""
_NICE = 10
_CHILD = "import sys; from mlcycle.serve._shadow import main; sys.exit(main(int(sys.argv[1])))"
_log = logging.getLogger("mlcycle.serve")


@dataclass(frozen=True, slots=True)
class ShadowLog:
    """Where a shadow's process logs the copies it predicts: the log, and the names in its rows."""

    opener: SinkOpener
    deployment: str
    variant: str


@dataclass(frozen=True, slots=True)
class Copies:
    """Copies of answered requests for a shadow, with what its log and metrics need.

    ``counts`` (rows), ``first_rows`` (the index of the first row within its
    request: a part of a larger request starts past 0), ``arrived``
    (``time.perf_counter()``), ``times`` (Unix epoch seconds) and
    ``id_lengths`` have one entry per request; ``ids`` is their request ids
    joined; ``rows`` holds the requests' rows in order.

    Arrays and one string, not lists of Python objects: pickling a message's
    1,024 floats, ints and strings, scattered over the worker's heap by the
    time it went, was most of the 540 µs an exchange held its event loop
    (paced at 8,500 requests/s; 60 µs when they were still in the caches).
    """

    rows: Rows
    ids: str
    id_lengths: array.array[int]
    counts: array.array[int]
    first_rows: array.array[int]
    arrived: array.array[float]
    times: array.array[float]

    def parts(self) -> list[memoryview] | None:
        """The copies as bytes, for a frame without a pickle (``_raw_framed``).

        ``None`` when their rows are not one matrix of numbers (string
        features): those go pickled. Pickling a message took the worker 125
        µs of a 375 µs exchange (a median, paced at 8,500 requests/s; its
        code runs too rarely to stay in the caches); these are a few views.
        """
        matrix = self.rows.matrix
        if (
            matrix is None
            or matrix.dtype.kind not in _NUMBERS
            or not matrix.flags.c_contiguous
            or not matrix.size  # a view of no bytes cannot be cast
        ):
            return None
        fields = (self.id_lengths, self.counts, self.first_rows, self.arrived, self.times)
        return [
            memoryview(_SHAPE.pack(self.rows.count, matrix.shape[1])),
            memoryview(matrix.dtype.str.encode("ascii")),
            memoryview(self.ids.encode("utf-8", "surrogatepass")),
            *(memoryview(field).cast("B") for field in fields),
            matrix.data.cast("B"),
        ]

    @classmethod
    def from_parts(cls, parts: Sequence[memoryview], names: Sequence[str]) -> Copies:
        """The copies ``parts`` holds (``Copies.parts``), their rows named ``names``."""
        shape, dtype, ids, id_lengths, counts, first_rows, arrived, times, matrix = parts
        count, columns = _SHAPE.unpack(shape)
        numbers = np.frombuffer(matrix, dtype=np.dtype(bytes(dtype).decode("ascii")))
        return cls(
            Rows(count, names, matrix=numbers.reshape(count, columns)),
            bytes(ids).decode("utf-8", "surrogatepass"),
            *(_array("q", field) for field in (id_lengths, counts, first_rows)),
            *(_array("d", field) for field in (arrived, times)),
        )

    @property
    def request_ids(self) -> list[str]:
        """Each request's id."""
        ids, start = [], 0
        for length in self.id_lengths:
            ids.append(self.ids[start : start + length])
            start += length
        return ids

    def each(self) -> Iterator[Copies]:
        """The copy of each request alone, in order."""
        row = begin = 0
        for index, (count, length) in enumerate(zip(self.counts, self.id_lengths, strict=True)):
            one = slice(index, index + 1)
            yield Copies(
                self.rows.slice(row, row + count),
                self.ids[begin : begin + length],
                self.id_lengths[one],
                self.counts[one],
                self.first_rows[one],
                self.arrived[one],
                self.times[one],
            )
            row += count
            begin += length

    def row_fields(self) -> tuple[list[str], list[int], list[float]]:
        """Each row's request id, index within its request, and arrival (Unix epoch seconds)."""
        if len(self.counts) == self.rows.count:  # single-row requests: as they are
            return self.request_ids, self.first_rows.tolist(), self.times.tolist()
        ids: list[str] = []
        indexes: list[int] = []
        times: list[float] = []
        for request_id, count, first, moment in zip(
            self.request_ids, self.counts, self.first_rows, self.times, strict=True
        ):
            ids += [request_id] * count
            indexes += range(first, first + count)
            times += [moment] * count
        return ids, indexes, times


class _Message:
    """The copies of one message to the process, gathered as batches are offered.

    Each offered batch's jobs are read here, while they are still in the
    processor's caches, into arrays (``Copies``). Read when the message went,
    and again when its answer was logged, some 250 requests' objects a
    message cost the worker cache misses each time: an exchange held the
    event loop for a median of 1.2 ms, against 0.54 ms gathered this way
    (paced at 3,900 requests/s). For the same reason numeric rows are copied
    into one matrix as they come (``_matrix``), not joined when the message
    goes: that join was 40 to 110 µs of a 540 µs exchange (paced at 8,500
    requests/s).
    """

    __slots__ = (
        "_matrix",
        "arrived",
        "counts",
        "first_rows",
        "id_lengths",
        "ids",
        "parts",
        "rows",
        "times",
    )

    def __init__(self) -> None:
        self.parts: list[Rows] = []
        """The batches' rows, while they are not in ``_matrix``."""
        self._matrix: np.ndarray | None = None
        """The rows so far, from the second part on while every part has a matrix; room
        for more past ``rows``."""
        self.rows = 0
        self.ids: list[str] = []
        """Each batch's request ids, joined."""
        self.id_lengths = array.array("q")
        self.counts = array.array("q")
        self.first_rows = array.array("q")
        self.arrived = array.array("d")
        self.times = array.array("d")

    def add(self, jobs: Sequence[Job], rows: Rows) -> None:
        """Add the copies of ``jobs``, whose rows ``rows`` are, in order."""
        self._gather(rows)
        self.rows += rows.count
        ids = [job.request_id for job in jobs]
        self.ids.append("".join(ids))
        self.id_lengths.extend(map(len, ids))
        self.counts.extend([job.rows.count for job in jobs])
        self.first_rows.extend([job.first_row for job in jobs])
        self.arrived.extend([job.arrived for job in jobs])
        self.times.extend([job.time for job in jobs])

    def _gather(self, rows: Rows) -> None:
        """Keep ``rows``: copied after the rows so far while every part has a matrix.

        A message of one part sends that part as it is. A copied batch is not
        kept: holding on to a message's batches until it went kept their
        memory from being used again while it was still in the caches. The
        room doubles as it runs out.
        """
        if not self.counts:
            self.parts.append(rows)
            return
        if self._matrix is None and len(self.parts) == 1:
            self._matrix = _room(self.parts[0])
            if self._matrix is not None:
                self.parts = []
        matrix = self._matrix
        if matrix is None or rows.matrix is None or rows.matrix.dtype != matrix.dtype:
            if matrix is not None:  # columns: the rows so far are one part, joined when it goes
                self.parts = [Rows(self.rows, rows.names, matrix=matrix[: self.rows])]
                self._matrix = None
            self.parts.append(rows)
            return
        end = self.rows + rows.count
        if end > len(matrix):
            grown = np.empty((max(end, 2 * len(matrix)), matrix.shape[1]), matrix.dtype)
            grown[: self.rows] = matrix[: self.rows]
            self._matrix = matrix = grown
        matrix[self.rows : end] = rows.matrix

    def copies(self, names: Sequence[str]) -> Copies:
        """The gathered copies, their rows as one."""
        if self._matrix is not None:
            rows = Rows(self.rows, names, matrix=self._matrix[: self.rows])
        elif not self.parts:  # none: asks the process for its tally (``_TALLY_S``)
            rows = Rows(0, names, matrix=np.empty((0, len(names))))
        else:
            rows = concat_rows(self.parts, names)
        fields = (self.id_lengths, self.counts, self.first_rows, self.arrived, self.times)
        return Copies(rows, "".join(self.ids), *fields)


def _array(code: str, data: memoryview) -> array.array[Any]:
    """An array of ``code`` holding the bytes ``data``."""
    values = array.array(code)
    values.frombytes(data)
    return values


def _room(rows: Rows) -> np.ndarray | None:
    """A matrix holding ``rows``'s matrix with room for more; ``None`` when it has none."""
    if rows.matrix is None:
        return None
    room = np.empty((max(_MATRIX_ROWS, 2 * rows.count), rows.matrix.shape[1]), rows.matrix.dtype)
    room[: rows.count] = rows.matrix
    return room


@dataclass(frozen=True, slots=True)
class Tally:
    """What a shadow's process predicted for one message, added up for the metrics.

    ``calls`` holds the rows of each predict call that succeeded (one call,
    or one per copy after the batch failed); ``lags`` the predicted copies'
    time behind their requests (with the lag histogram's buckets), ``values``
    their outputs when they are single numbers; ``failed`` the error of each
    copy it failed on; ``now`` when it predicted (``time.perf_counter()``).
    """

    now: float
    calls: list[int]
    lags: Observed | None
    values: Observed | None
    failed: list[str]


CopiesDone = Callable[[Copies, "Tally | None"], None]
"""Called with each message's copies once the shadow's process is done with them.

With what it predicted since it last told (``Tally``), at most every
``_TALLY_S``; ``None`` when it did not tell this time.
"""


class ShadowGone(MlcycleError):
    """The shadow's process exited or could not load its model."""


class ShadowProcess:
    """One shadow variant's queue and the process that predicts it (see the module).

    The exchange with the process rides on the requests themselves: the
    first ``offer`` after ``_FLUSH_S`` has passed (or once ``_SEND_ROWS``
    rows wait) asks the loop to look, once the answers of the moment are
    written, whether ``idle()`` says no request is in flight; if so it reads
    the process's answer (without waiting), measures it, and sends
    the next batch. So that work falls in the serving process's gaps, as the
    predict calls of a shadow on a thread did, instead of delaying requests.
    Nothing wakes up for the shadow on its own, except a timer when no
    exchange came for ``_IDLE_S`` while copies wait, a batch is out or its
    tally is untold (``_TALLY_S``): on
    this machine's virtual CPUs a wakeup from idle cost 100 to 170 µs of
    CPU, and a batch sent on a timer plus an answer read when it arrived
    were two such wakeups a message.
    """

    def __init__(
        self,
        model: ServedModel,
        *,
        opener: RegistryOpener,
        max_rows: int,
        max_queue: int,
        done: CopiesDone,
        idle: Callable[[], bool],
        log: ShadowLog | None = None,
        lag_bounds: Sequence[float] | None = None,
    ) -> None:
        self.model = model
        self.max_rows = max_rows
        """The most rows a request may have: the process's model is loaded with this limit."""
        self.max_queue = max_queue
        self._opener = opener
        self._log = log
        """Where the process logs its copies; ``None``: they are predicted and measured only."""
        self._lag_bounds = None if lag_bounds is None else tuple(lag_bounds)
        """The lag histogram's upper bounds, for the process's ``Tally``; ``None``: no lags."""
        self._done = done
        self._idle = idle
        self._queue: collections.deque[_Message] = collections.deque()
        """The copies waiting, as the messages they will go in (the last one still gathers)."""
        self._queued = 0
        self._queued_rows = 0
        self._sent: Copies | None = None
        """The batch the process is predicting, until its answer is read."""
        self._untold = False
        """Whether the process predicted copies it has not told the tally of (``_TALLY_S``)."""
        self._inbox = bytearray()
        self._chunk = bytearray(1 << 16)
        self._outbox: list[memoryview] = []
        """What is left to send of the batch sent (``_framed``)."""
        self._due = 0.0
        self._looking = False
        """Whether the loop is asked to look for an idle moment (``_at_gap``)."""
        self._closing = False
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._restart: asyncio.Task[None] | None = None
        self._warned = 0.0

    @property
    def pid(self) -> int | None:
        """The process id of the shadow's process, while it runs."""
        return None if self._process is None else self._process.pid

    @property
    def queued(self) -> int:
        """Copies waiting to go to the process."""
        return self._queued

    @property
    def busy(self) -> bool:
        """Whether copies are queued or a batch is being predicted."""
        return self._sent is not None or bool(self._queue)

    async def start(self) -> None:
        """Start the process and wait until it has loaded the model; ``ShadowGone`` if it cannot."""
        await self._spawn()

    def offer(self, jobs: Sequence[Job], rows: Rows) -> bool:
        """Queue copies of ``jobs`` (``rows`` are theirs, in order) to predict.

        ``False``, and nothing queued, when they do not fit in the queue, the
        process is down, or this closes.
        """
        if self._closing or self._socket is None or self._queued + len(jobs) > self.max_queue:
            return False
        if not self._queue or self._queue[-1].rows + rows.count > _MESSAGE_ROWS:
            self._queue.append(_Message())  # a batch larger than a message goes alone
        self._queue[-1].add(jobs, rows)
        self._queued += len(jobs)
        self._queued_rows += rows.count
        if self._queued_rows >= _FORCE_ROWS:
            self._pump()
        elif not self._looking and (
            self._queued_rows >= _SEND_ROWS or time.perf_counter() >= self._due
        ):
            self._looking = True
            asyncio.get_running_loop().call_soon(self._at_gap)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(_IDLE_S, self._on_timer)
        return True

    async def close(self) -> None:
        """Predict what is queued, then stop the process.

        A process that has not predicted the queued copies within ``_EXIT_S``
        (hung in its model, or stopped) is stopped anyway; they are lost.
        """
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._restart is not None:
            self._restart.cancel()
            await asyncio.gather(self._restart, return_exceptions=True)
        try:
            await asyncio.wait_for(self._drain(), _EXIT_S)
            if self._untold and self._socket is not None:
                self._queue.append(_Message())  # no copies: asks for the tally
                await asyncio.wait_for(self._drain(), _EXIT_S)
        except TimeoutError:
            _log.error(
                "shadow %s: its process did not predict its last %d copies in %.0f s; "
                "stopping it without them",
                self.model.ref,
                self._queued + (0 if self._sent is None else len(self._sent.counts)),
                _EXIT_S,
            )
        await self._stop()

    async def _drain(self) -> None:
        while self._socket is not None and self.busy:
            self._pump()
            if self._socket is not None and self.busy:
                await _ready(self._socket, write=bool(self._outbox))

    def _at_gap(self) -> None:
        """Exchange with the process if no request is in flight; else a later offer asks again."""
        self._looking = False
        if self._idle():
            self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        if self._untold and self._sent is None and not self._queue:
            self._queue.append(_Message())  # no copies: asks for the tally (``_TALLY_S``)
        self._pump()

    def _pump(self) -> None:
        """Read the process's answer if it is there; send the next batch if it is free.

        Then the timer is set ``_IDLE_S`` from now while copies wait, a
        batch is out or its tally is untold (not while closing: ``close``
        reads and sends itself).
        """
        self._due = time.perf_counter() + _FLUSH_S
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            if self._outbox:
                self._write()
            if self._sent is not None:
                self._read()
            if self._sent is None and not self._outbox and self._queue:
                self._sent = copies = self._take()
                self._outbox = _copies_framed(copies)
                self._write()
        except (OSError, ShadowGone) as exc:
            self._lost(exc)
            return
        if (self.busy or self._untold) and not self._closing:
            self._timer = asyncio.get_running_loop().call_later(_IDLE_S, self._on_timer)

    def _take(self) -> Copies:
        """The oldest message's copies."""
        message = self._queue.popleft()
        self._queued -= len(message.counts)
        self._queued_rows -= message.rows
        return message.copies(self.model.schema.names)

    def _write(self) -> None:
        assert self._socket is not None, "only while the process runs"
        try:
            sent = self._socket.sendmsg(self._outbox)
        except BlockingIOError:
            return
        outbox = self._outbox
        while outbox and sent >= outbox[0].nbytes:
            sent -= outbox.pop(0).nbytes
        if sent:
            outbox[0] = outbox[0][sent:]

    def _read(self) -> None:
        """Take the process's answer to the batch sent, if it has come in whole."""
        assert self._socket is not None, "only while the process runs"
        assert self._sent is not None, "only while a batch is out"
        closed = False
        while True:
            try:
                count = self._socket.recv_into(self._chunk)
            except BlockingIOError:
                break
            if not count:
                closed = True  # after what it sent: an answer that came whole still counts
                break
            self._inbox += memoryview(self._chunk)[:count]
        end = _frame_end(self._inbox)
        if end is None or len(self._inbox) < end:
            if closed:
                raise ShadowGone("it closed its socket")
            return
        frame = self._inbox[:end]  # a copy: the inbox is cut next
        del self._inbox[:end]
        answer = _unframed(frame)
        copies, self._sent = self._sent, None
        self._untold = not answer  # no parts: done, no tally
        if self._untold:
            self._done(copies, None)
        else:
            now, calls, lags, values, failed = answer
            self._deliver(
                copies,
                Tally(
                    now,
                    calls,
                    None if lags is None else Observed(*lags),
                    None if values is None else Observed(*values),
                    failed,
                ),
            )
        if closed:
            raise ShadowGone("it closed its socket")

    def _deliver(self, copies: Copies, predicted: Tally) -> None:
        """Hand on what the process predicted; warn (at most once a minute) of failed copies."""
        self._done(copies, predicted)
        failed = predicted.failed
        if failed and time.monotonic() - self._warned >= _WARN_EVERY_S:
            self._warned = time.monotonic()
            _log.warning(
                "shadow %s failed on %d of %d copies (first: %s); it is not logged for "
                "them (this warning repeats at most once a minute)",
                self.model.ref,
                len(failed),
                len(copies.counts),
                failed[0],
            )

    def _lost(self, error: BaseException) -> None:
        """The process died: drop what it had and what waits, and start it again."""
        code = None if self._process is None else self._process.poll()
        lost = self._queued + (0 if self._sent is None else len(self._sent.counts))
        _log.error(
            "shadow %s: its process exited (%s, code %s); %d copies were lost; starting it again",
            self.model.ref,
            error,
            code,
            lost,
        )
        self._queue.clear()
        self._queued = self._queued_rows = 0
        self._sent, self._inbox, self._outbox = None, bytearray(), []
        self._untold = False  # the process's tally died with it
        sock, self._socket = self._socket, None  # offers are shed until it is back
        if sock is not None:
            sock.close()
        if not self._closing and self._restart is None:
            self._restart = asyncio.get_running_loop().create_task(
                self._respawn(), name=f"restart shadow {self.model.ref}"
            )

    async def _respawn(self) -> None:
        """Start the process again, waiting longer after each failed start."""
        wait = _RESTART_S[0]
        try:
            await self._stop()
            while True:
                await asyncio.sleep(wait)
                try:
                    await self._spawn()
                except (OSError, ShadowGone) as exc:
                    _log.error("shadow %s: starting its process failed: %s", self.model.ref, exc)
                    wait = min(wait * 2, _RESTART_S[1])
                    continue
                _log.warning("shadow %s: its process is back", self.model.ref)
                return
        finally:
            self._restart = None

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                # This process's import path, so a model's own classes (a pyfunc's) import
                # there as they did here.
                env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, sys.path))},
            )
        finally:
            theirs.close()
        ours.setblocking(False)  # noqa: FBT003  (the socket module's own signature)
        self._process = process
        try:
            hello = (self._opener, self.model.ref, self.max_rows, self._log, self._lag_bounds)
            await _send(ours, hello)
            answer = await asyncio.wait_for(_receive(ours), _START_TIMEOUT_S)
        except (OSError, ShadowGone, TimeoutError) as exc:
            ours.close()
            await self._stop()
            raise ShadowGone(
                f"the process of shadow {self.model.ref} did not start: {exc or type(exc)}"
            ) from None
        except BaseException:  # cancelled (the server stops while it starts): it exits on EOF
            ours.close()
            raise
        if answer != "ready":
            ours.close()
            await self._stop()
            raise ShadowGone(f"the process of shadow {self.model.ref} cannot serve it: {answer}")
        self._socket = ours

    async def _stop(self) -> None:
        """Close the socket (the process exits when it reads its end) and reap the process.

        It exits once its log has written and synced what it holds; one
        still running after ``_EXIT_S`` is killed. Its segments stay in the
        spool, read as they are, until a log closed or opened on the machine
        rolls them over (the worker's own, when it stops).
        """
        sock, process = self._socket, self._process
        self._socket = self._process = None
        if sock is not None:
            sock.close()
        if process is not None:
            try:
                await asyncio.to_thread(process.wait, _EXIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)


async def _ready(sock: socket.socket, *, write: bool) -> None:
    """Wait until ``sock`` can be written (``write``) or read."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    fd = sock.fileno()
    if write:
        loop.add_writer(fd, ready.set_result, None)
    else:
        loop.add_reader(fd, ready.set_result, None)
    try:
        await ready
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


def _framed(message: object) -> list[memoryview]:
    """``message`` as the parts of one frame: its head, its pickle, then its arrays' memory.

    An array's memory goes to the socket as it is (out of band), not copied
    into the pickle first: a message's matrix of copies is most of its bytes.
    """
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    raws = [buffer.raw() for buffer in buffers]
    head = _FRAME.pack(len(data), len(raws)) + b"".join(_SIZE.pack(raw.nbytes) for raw in raws)
    return [memoryview(head), memoryview(data), *raws]


def _copies_framed(copies: Copies) -> list[memoryview]:
    """A message's frame: its parts as they are, or pickled when its rows are not all numbers."""
    parts = copies.parts()
    return _framed(copies) if parts is None else _raw_framed(parts)


def _copies_read(message: Any, names: Sequence[str]) -> Copies:  # Any: unpickled
    """The copies of a message ``_unframed`` gave (``_copies_framed``)."""
    return Copies.from_parts(message, names) if isinstance(message, list) else message


def _raw_framed(parts: Sequence[memoryview]) -> list[memoryview]:
    """``parts`` (bytes) as one frame with no pickle: read back as they are (``_unframed``)."""
    sizes = struct.pack(f"!{len(parts)}Q", *(part.nbytes for part in parts))
    return [memoryview(_FRAME.pack(0, len(parts)) + sizes), *parts]


def _frame_end(data: bytearray) -> int | None:
    """The length of the frame ``data`` starts with, once its head is there; else ``None``."""
    if len(data) < _FRAME.size:
        return None
    size: int
    count: int
    size, count = _FRAME.unpack_from(data)
    head = _FRAME.size + count * _SIZE.size
    if len(data) < head:
        return None
    buffers: tuple[int, ...] = struct.unpack_from(f"!{count}Q", data, _FRAME.size)
    return head + size + sum(buffers)


def _unframed(frame: bytearray) -> Any:  # Any: unpickled
    """The message of one whole ``frame`` (``_framed``); its arrays are views of it.

    A frame without a pickle (``_raw_framed``) gives its parts, a list of views.
    """
    size, count = _FRAME.unpack_from(frame)
    start = _FRAME.size + count * _SIZE.size
    view = memoryview(frame)
    data, buffers = view[start : start + size], []
    start += size
    for length in struct.unpack_from(f"!{count}Q", frame, _FRAME.size):
        buffers.append(view[start : start + length])
        start += length
    if not size:  # a pickle is never empty
        return buffers
    return pickle.loads(data, buffers=buffers)  # noqa: S301  (our own processes, a socket pair)


async def _send(sock: socket.socket, message: object) -> None:
    await asyncio.get_running_loop().sock_sendall(sock, b"".join(_framed(message)))


async def _receive(sock: socket.socket) -> Any:  # Any: unpickled
    head = await _receive_exactly(sock, _FRAME.size)
    count = _FRAME.unpack(head)[1]
    head += await _receive_exactly(sock, count * _SIZE.size)
    end = _frame_end(head)
    assert end is not None, "the whole head was read"
    return _unframed(head + await _receive_exactly(sock, end - len(head)))


async def _receive_exactly(sock: socket.socket, size: int) -> bytearray:
    loop = asyncio.get_running_loop()
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        count = await loop.sock_recv_into(sock, view[got:])
        if count == 0:
            raise ShadowGone("the shadow's process closed its socket")
        got += count
    return buffer


def _predicted(
    copies: Copies,
    reply: tuple[float, np.ndarray | None, list[np.ndarray | str] | None],
    failed: list[str],
) -> Iterator[tuple[Copies, np.ndarray]]:
    """The copies the process predicted with their outputs: the whole batch, or each alone.

    The messages of the copies it failed on are added to ``failed``.
    """
    _now, outputs, parts = reply
    if outputs is not None:
        yield copies, outputs
        return
    assert parts is not None, "a reply has outputs or parts"
    for alone, part in zip(copies.each(), parts, strict=True):
        if isinstance(part, str):
            failed.append(part)
        else:
            yield alone, part


# --- the shadow's process -----------------------------------------------------------------


def main(fd: int) -> int:
    """Serve one shadow model over the socket ``fd``: load it, then predict each batch sent.

    Returns when the serving process closes its end (it stopped or died).
    """
    # Ctrl-C in a terminal reaches the whole process group; the server decides when this
    # process ends (it closes the socket), after the copies still queued are predicted.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    hello = _read(sock)
    if hello is None:
        return 0
    opener, ref, max_rows, log, lag_bounds = hello
    try:
        from mlcycle.serve._model import load_model  # noqa: PLC0415  (after the hello)

        model = load_model(opener(), ref, max_rows=max_rows)
        sink = None if log is None else log.opener()
    except Exception as exc:  # noqa: BLE001  (any failure is told to the server, which logs it)
        _write(sock, f"{type(exc).__name__}: {exc}")
        return 1
    # Only now: at the lowest priority from the start, a busy machine starved the imports
    # and the model's load, and with them the deployment change that waited for them.
    _lowest_priority()
    try:
        _write(sock, "ready")
        ack = b"".join(_raw_framed([]))
        untold: _Reply | None = None
        told = time.perf_counter()
        while (message := _read(sock)) is not None:
            copies = _copies_read(message, model.schema.names)
            predicted = _predict(model, copies.rows, copies.counts) if copies.counts else None
            if predicted is not None:
                untold = _added(untold, _tally(copies, predicted, lag_bounds))
            # No copies: the worker asks for the tally. [4]: the copies that failed.
            if untold is not None and (
                predicted is None or untold[4] or time.perf_counter() - told >= _TALLY_S
            ):
                _write(sock, untold)
                untold, told = None, time.perf_counter()
            else:
                sock.sendall(ack)
            if sink is not None and predicted is not None:
                for part, outputs in _predicted(copies, predicted, []):
                    sink.append(_logged(log, model, part, outputs, predicted[0]))
    finally:
        if sink is not None:
            # Written and synced, its segments are left to a process of normal priority: the
            # worker rolls them into Delta when it closes its own log (a rollover here, at the
            # idle priority, waited for a free core as long as the machine was busy).
            sink.flush()
    return 0


def _tally(
    copies: Copies,
    predicted: tuple[float, np.ndarray | None, list[np.ndarray | str] | None],
    lag_bounds: Sequence[float] | None,
) -> _Reply:
    """``Tally``'s fields, its ``Observed`` as tuples: the reply to the serving process."""
    failed: list[str] = []
    calls: list[int] = []
    arrived: list[float] = []
    outputs: list[np.ndarray] = []
    for part, predictions in _predicted(copies, predicted, failed):
        calls.append(part.rows.count)
        arrived += part.arrived
        outputs.append(predictions)
    now = predicted[0]
    lags = values = None
    if lag_bounds is not None and arrived:
        lags = _sums(tally(now - np.array(arrived, dtype=np.float64), lag_bounds))
    if outputs and all(o.ndim == 1 and o.dtype.kind in "fiub" for o in outputs):
        values = _sums(tally(np.concatenate(outputs).astype(np.float64, copy=False)))
    return now, calls, lags, values, failed


def _added(before: _Reply | None, reply: _Reply) -> _Reply:
    """``before`` and ``reply`` added up, at ``reply``'s time."""
    if before is None:
        return reply
    now, calls, lags, values, failed = reply
    return (
        now,
        before[1] + calls,
        _sums_added(before[2], lags),
        _sums_added(before[3], values),
        before[4] + failed,
    )


def _sums_added(before: _Sums | None, sums: _Sums | None) -> _Sums | None:
    """Two ``_Sums`` of the same histogram or summary added up; either may be ``None``."""
    if before is None or sums is None:
        return sums if before is None else before
    buckets = dict(before[2])
    for slot, count in sums[2]:
        buckets[slot] = buckets.get(slot, 0) + count
    return before[0] + sums[0], before[1] + sums[1], tuple(sorted(buckets.items()))


def _sums(observed: Observed) -> _Sums:
    return observed.count, observed.total, observed.buckets


def _logged(
    log: ShadowLog, model: ServedModel, copies: Copies, outputs: np.ndarray, now: float
) -> PredictionBatch:
    """The log's rows for predicted copies; their latency is each copy's lag behind its request."""
    request_ids, row_indexes, times = copies.row_fields()
    lags = now - np.array(copies.arrived, dtype=np.float64)
    if len(copies.counts) != copies.rows.count:  # requests of several rows: a lag per row
        lags = np.repeat(lags, copies.counts)
    return PredictionBatch(
        deployment=log.deployment,
        model=model.name,
        model_version=model.version,
        variant=log.variant,
        shadow=True,
        request_ids=request_ids,
        row_indexes=row_indexes,
        times=times,
        latency_ms=lags * 1000,
        inputs=logged_inputs(copies.rows),
        outputs=outputs,
    )


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


def _predict(
    model: ServedModel, rows: Rows, counts: Sequence[int]
) -> tuple[float, np.ndarray | None, list[np.ndarray | str] | None]:
    """``(now, outputs, None)``; after an error, ``(now, None, parts)``: each copy alone."""
    try:
        outputs = model.predict(rows)
    except Exception:  # noqa: BLE001  (a model may raise anything; each copy is tried alone)
        parts: list[np.ndarray | str] = []
        start = 0
        for count in counts:
            try:
                parts.append(model.predict(rows.slice(start, start + count)))
            except Exception as exc:  # noqa: BLE001
                parts.append(f"{type(exc).__name__}: {exc}")
            start += count
        return time.perf_counter(), None, parts
    return time.perf_counter(), outputs, None


def _read(sock: socket.socket) -> Any:  # Any: unpickled
    """The next message, or ``None`` once the other end is closed."""
    head = _read_exactly(sock, _FRAME.size)
    sizes = None if head is None else _read_exactly(sock, _FRAME.unpack(head)[1] * _SIZE.size)
    if head is None or sizes is None:
        return None
    head += sizes
    end = _frame_end(head)
    assert end is not None, "the whole head was read"
    rest = _read_exactly(sock, end - len(head))
    return None if rest is None else _unframed(head + rest)


def _read_exactly(sock: socket.socket, size: int) -> bytearray | None:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        count = sock.recv_into(view[got:])
        if count == 0:
            return None
        got += count
    return buffer


def _write(sock: socket.socket, message: object) -> None:
    sock.sendall(b"".join(_framed(message)))
