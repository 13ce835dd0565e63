"""A shadow variant: copies of what the server answered, predicted in a process of its own.

The copies come from the serving process's prediction log (``Tee``): its
writer thread, right after it wrote and synced a round's answered rows of
the deployment, hands each record batch to the deployment's shadows, which
send its request ids, times and inputs (``_COPIED``) to their processes as
Arrow IPC streams over a socket pair. Nothing is done for a shadow on the
event loop that answers requests, nor per request: the writer already holds
the rows as columns. Gathering copies on the event loop instead (numbers
copied into a matrix as batches were answered, sent in the gaps between
requests) cost the primary about 10 % of its p99 latency at half the
server's top rate on a steady machine; handing them over from the writer
costs it nothing measurable (with a process that only reads them, 1.00x;
ADR 0011).

The writer never waits for a shadow: a record batch that does not fit in
the shadow's backlog of ``max_queue`` rows, or that comes while the server
sheds load (``shedding``) or while the process is down, is dropped and
counted (``shed``); what the socket does not take at once waits in the
backlog for the writer's next round.

The shadow's process (this interpreter running ``main``, at the idle CPU
priority) loads the same model version through the registry, reads the
logged inputs its model takes by name (a shadow whose inputs differ from
the answering variant's reads the ones it needs; one the log does not hold
fails those copies), predicts them in parts with short pauses between
(``_PAUSE_S``), logs the copies to a prediction log of its own
(``ShadowLog``; the logged columns it read are logged again as they are,
``copies_record``) and, at most every ``_TALLY_S``, sends what the serving
process's metrics need, already added up (``Tally``): the rows of each
predict call, and the buckets and sums of the copies' lags and predicted
values. A copy's lag is the time from its request's arrival (its logged
``time``) until it was predicted, by the server's clock.

When the process dies, what waited for it is lost, copies are shed until a
new process has loaded the model, and it is started again. Closing a shadow
waits until the server's log has written what it was given, sends the rest,
and lets the process predict it all and exit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.errors import MlcycleError, ValidationFailed
from mlcycle.serve._metrics import Observed, tally
from mlcycle.serve._predlog import copies_record
from mlcycle.serve._rows import NUMERIC_TYPES, Rows, check_column

if TYPE_CHECKING:
    from mlcycle.registry import ColumnSpec, ModelRegistry
    from mlcycle.serve._model import ServedModel
    from mlcycle.serve._predlog import PredictionLog, Tee
    from mlcycle.serve._rows import Schema

__all__ = [
    "CopySource",
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
SinkOpener = Callable[[], "PredictionLog"]
"""Opens the project's prediction log in the process that calls it; must pickle.

``functools.partial(mlcycle.workspace.open_prediction_log, settings)`` is one.
"""

_COPIED = ("request_id", "row_index", "time", "inputs")
"""The log's columns a shadow's process reads."""
_HEAD = struct.Struct("!Qd")
"""A copy message's head: the size of its Arrow stream, and how far the server's clock is
ahead of the system's (``time.time()``; a simulated clock's offset), for the copies' lags."""
_FRAME = struct.Struct("!Q")
"""A control message's head (the hello, the answer to it, a tally): the size of its pickle."""
_MAX_PARTS = 512
"""The most buffers one ``sendmsg`` is given (Linux takes up to 1,024)."""
_SEND_BUFFER = 4 << 20
"""The copies socket's send buffer asked for (the system may give less)."""
_CHUNK_ROWS = 128
"""The rows of each predict call of the shadow's process (a request is never cut)."""
_PAUSE_S = 0.002
"""The shadow's process's pause between its predict calls on one message of copies.

A round of the log's writer at 11,000 requests/s holds some 2,300 copies.
Predicted and logged at once, they were a burst of a few milliseconds every
0.2 s on the second core, during which the worker's requests ran slower (the
two cores share caches): the primary's p99 read 1.15x and 1.22x that without
a shadow. Spread out in parts of ``_CHUNK_ROWS`` rows with this pause, 1.01x,
1.09x, 1.10x, 1.02x and 1.06x, for 2 to 3 µs more of the process's CPU a
request (2026-12-05, ``docs/benchmarks.md``). A process that falls behind does not pause: the
pause ends as soon as more copies wait on its socket.
"""
_TALLY_S = 1.0
"""How often, at most, the process sends what it predicted, added up (``Tally``).

It sends at once when a copy failed, and after a second without copies
what it has not told yet.
"""
_START_TIMEOUT_S = 300.0
_EXIT_S = 60.0
"""How long a closing shadow's process may take to predict its last copies, and then to
write out its log and exit, before it is killed."""
_RESTART_S = (1.0, 30.0)
"""The first and the longest wait before a dead shadow process is started again."""
_WARN_EVERY_S = 60.0
_Sums = tuple[int, float, tuple[tuple[int, int], ...]]
"""An ``Observed`` as it travels back from the process (plain tuples pickle fastest)."""
_Reply = tuple[list[int], _Sums | None, _Sums | None, list[str]]
"""``Tally``'s fields, its ``Observed`` as ``_Sums``: what the process tells."""
_NICE = 10
_CHILD = (
    "import sys; from mlcycle.serve._shadow import main; "
    "sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))"
)
_log = logging.getLogger("mlcycle.serve")


class CopySource(Protocol):
    """The log whose writer hands a shadow its copies (``PredictionLog``)."""

    def add_tee(self, deployment: str, tee: Tee) -> None: ...

    def remove_tee(self, deployment: str, tee: Tee) -> None: ...

    def flush(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ShadowLog:
    """Where a shadow's process logs the copies it predicts: the log, and the names in its rows."""

    opener: SinkOpener
    deployment: str
    variant: str


@dataclass(frozen=True, slots=True)
class Tally:
    """What a shadow's process predicted since it last told, added up for the metrics.

    ``calls`` holds the rows of each predict call that succeeded (one call
    a message, or one per copy after the message's call failed); ``lags``
    the predicted copies' time behind their requests (with the lag
    histogram's buckets), ``values`` their outputs when they are single
    numbers; ``failed`` the error of each copy it failed on.
    """

    calls: list[int]
    lags: Observed | None
    values: Observed | None
    failed: list[str]


class ShadowGone(MlcycleError):
    """The shadow's process exited or could not load its model."""


class _Tee:
    """The log writer's side of a shadow (``Tee``): copies sent to its process, never awaited.

    Called on the writer's thread; the event loop attaches and detaches the
    process's socket. Its lock keeps the two apart (the writer holds it while
    it serializes a record batch or sends, never while it waits).
    """

    def __init__(
        self,
        *,
        max_rows: int,
        shedding: Callable[[], bool],
        shed: Callable[[int], None],
        clock: Callable[[], float],
    ) -> None:
        self.max_rows = max_rows
        self._shedding = shedding
        self._shed = shed
        self._clock = clock
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._out: list[memoryview] = []
        """What is left to send, message after message."""
        self._messages: collections.deque[list[int]] = collections.deque()
        """Each message not sent whole: its bytes left to send and its rows."""
        self._rows = 0
        """The rows of ``_messages``: the backlog, at most ``max_rows``."""

    def attach(self, sock: socket.socket) -> None:
        """Send copies over ``sock`` (non-blocking) from now on."""
        with self._lock:
            self._socket = sock

    def detach(self) -> tuple[list[memoryview], int]:
        """Stop sending: what was left to send, and its rows; copies are shed until attached."""
        with self._lock:
            left, rows = self._out, self._rows
            self._socket, self._out, self._rows = None, [], 0
            self._messages.clear()
            return left, rows

    def take(self, record: pa.RecordBatch) -> None:
        """Queue the copies of the answered rows in ``record``, or shed them (see the module)."""
        rows = record.num_rows
        with self._lock:
            if self._socket is None or self._rows + rows > self.max_rows or self._shedding():
                self._shed(rows)
                return
            body = _stream(record.select(_COPIED))
            head = _HEAD.pack(body.size, self._clock() - time.time())
            self._out += [memoryview(head), memoryview(body)]
            self._messages.append([len(head) + body.size, rows])
            self._rows += rows

    def send(self) -> None:
        """Send what the socket takes without waiting; the rest waits for the next round.

        A socket the process closed (it died) stops the sending; the event
        loop learns it from the control socket and starts the process again.
        """
        with self._lock:
            while self._out and self._socket is not None:
                try:
                    sent = self._socket.sendmsg(self._out[:_MAX_PARTS])
                except BlockingIOError:
                    return
                except OSError:
                    self._socket = None  # detached by the loop, which counts what was left
                    return
                self._sent(sent)

    def _sent(self, count: int) -> None:
        """Drop the first ``count`` bytes of ``_out``, and the messages sent whole."""
        out, left = self._out, count
        done = 0
        while done < len(out) and left >= out[done].nbytes:
            left -= out[done].nbytes
            done += 1
        del out[:done]
        if left:
            out[0] = out[0][left:]
        while count and self._messages:
            message = self._messages[0]
            taken = min(count, message[0])
            message[0] -= taken
            count -= taken
            if message[0]:
                break
            self._rows -= message[1]
            self._messages.popleft()


def _stream(record: pa.RecordBatch) -> pa.Buffer:
    """``record`` as one Arrow IPC stream: its schema, then its columns' buffers."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, record.schema) as writer:
        writer.write_batch(record)
    return sink.getvalue()


class ShadowProcess:
    """One shadow variant: the log writer's tee and the process that predicts (see the module)."""

    def __init__(
        self,
        model: ServedModel,
        *,
        opener: RegistryOpener,
        source: CopySource,
        deployment: str,
        max_rows: int,
        max_queue: int,
        done: Callable[[Tally], None],
        shedding: Callable[[], bool],
        shed: Callable[[int], None],
        clock: Callable[[], float] = time.time,
        log: ShadowLog | None = None,
        lag_bounds: Sequence[float] | None = None,
    ) -> None:
        self.model = model
        self.max_rows = max_rows
        """The most rows a request may have: the process's model is loaded with this limit."""
        self._opener = opener
        self._source = source
        self._deployment = deployment
        self._log = log
        """Where the process logs its copies; ``None``: they are predicted and measured only."""
        self._lag_bounds = None if lag_bounds is None else tuple(lag_bounds)
        """The lag histogram's upper bounds, for the process's ``Tally``; ``None``: no lags."""
        self._done = done
        self._tee = _Tee(max_rows=max_queue, shedding=shedding, shed=shed, clock=clock)
        self._inbox = bytearray()
        self._closing = False
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._copies: socket.socket | None = None
        self._restart: asyncio.Task[None] | None = None
        self._warned = 0.0

    @property
    def pid(self) -> int | None:
        """The process id of the shadow's process, while it runs."""
        return None if self._process is None else self._process.pid

    async def start(self) -> None:
        """Start the process, wait until it has loaded the model, then take copies.

        ``ShadowGone`` when it cannot.
        """
        await self._spawn()
        self._source.add_tee(self._deployment, self._tee)

    async def close(self) -> None:
        """Hand the process every copy the log was given so far, let it predict them, stop it.

        A process that has not predicted them within ``_EXIT_S`` (hung in
        its model, or stopped) is stopped anyway; they are lost.
        """
        self._closing = True
        if self._restart is not None:
            self._restart.cancel()
            await asyncio.gather(self._restart, return_exceptions=True)
        # Every row answered so far is written, so handed to the tee; then the writer lets go.
        await asyncio.to_thread(self._source.flush)
        self._source.remove_tee(self._deployment, self._tee)
        left, rows = self._tee.detach()  # its lock: the writer is out of it now
        copies = self._copies
        if copies is not None:
            try:
                await asyncio.wait_for(
                    asyncio.get_running_loop().sock_sendall(copies, b"".join(left)), _EXIT_S
                )
                copies.shutdown(socket.SHUT_WR)  # the process predicts what it has, then exits
            except (OSError, TimeoutError) as exc:
                _log.error(
                    "shadow %s: its last %d copies could not be sent to its process (%s); "
                    "stopping it without them",
                    self.model.ref,
                    rows,
                    exc or type(exc).__name__,
                )
        await self._stop()

    def _on_control(self, control: socket.socket) -> None:
        """Read what the process told (tallies); its end closed means it died."""
        try:
            data = control.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(exc)
            return
        if not data:
            self._lost(ShadowGone("it closed its socket"))
            return
        self._inbox += data
        self._deliver_told()

    def _deliver_told(self) -> None:
        """Hand on each whole tally in the inbox."""
        while len(self._inbox) >= _FRAME.size:
            end = _FRAME.size + _FRAME.unpack_from(self._inbox)[0]
            if len(self._inbox) < end:
                return
            reply: _Reply = pickle.loads(self._inbox[_FRAME.size : end])  # noqa: S301  (our process)
            del self._inbox[:end]
            calls, lags, values, failed = reply
            self._deliver(
                Tally(
                    calls,
                    None if lags is None else Observed(*lags),
                    None if values is None else Observed(*values),
                    failed,
                )
            )

    def _deliver(self, predicted: Tally) -> None:
        """Hand on what the process predicted; warn (at most once a minute) of failed copies."""
        self._done(predicted)
        failed = predicted.failed
        if failed and time.monotonic() - self._warned >= _WARN_EVERY_S:
            self._warned = time.monotonic()
            _log.warning(
                "shadow %s failed on %d copies (first: %s); it is not logged for them "
                "(this warning repeats at most once a minute)",
                self.model.ref,
                len(failed),
                failed[0],
            )

    def _lost(self, error: BaseException) -> None:
        """The process died (or closed its end while closing): stop, and start it again."""
        if self._control is not None:
            _unwatch(self._control)
        if self._closing:
            return  # ``close`` reaps it
        _left, rows = self._tee.detach()  # copies are shed until it is back
        code = None if self._process is None else self._process.poll()
        _log.error(
            "shadow %s: its process exited (%s, code %s); %d copies waiting for it were lost; "
            "starting it again",
            self.model.ref,
            error,
            code,
            rows,
        )
        if self._restart is None:
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
        control, their_control = socket.socketpair()
        copies, their_copies = socket.socketpair()
        theirs = (their_control.fileno(), their_copies.fileno())
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _CHILD, *map(str, theirs)],
                pass_fds=theirs,
                stdin=subprocess.DEVNULL,
                # This process's import path, so a model's own classes (a pyfunc's) import
                # there as they did here.
                env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, sys.path))},
            )
        except BaseException:
            control.close()
            copies.close()
            raise
        finally:
            their_control.close()
            their_copies.close()
        for sock in (control, copies):
            sock.setblocking(False)  # noqa: FBT003  (the socket module's own signature)
        with contextlib.suppress(OSError):
            copies.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
        self._process, self._control, self._copies = process, control, copies
        try:
            hello = (self._opener, self.model.ref, self.max_rows, self._log, self._lag_bounds)
            await asyncio.get_running_loop().sock_sendall(control, _framed(hello))
            answer = await asyncio.wait_for(_receive(control), _START_TIMEOUT_S)
        except (OSError, ShadowGone, TimeoutError) as exc:
            await self._stop()
            raise ShadowGone(
                f"the process of shadow {self.model.ref} did not start: {exc or type(exc)}"
            ) from None
        except BaseException:  # cancelled (the server stops while it starts): it exits on EOF
            await self._stop()
            raise
        if answer != "ready":
            await self._stop()
            raise ShadowGone(f"the process of shadow {self.model.ref} cannot serve it: {answer}")
        self._inbox = bytearray()
        asyncio.get_running_loop().add_reader(control.fileno(), self._on_control, control)
        self._tee.attach(copies)

    async def _stop(self) -> None:
        """Wait for the process to exit (killed after ``_EXIT_S``), then read its last tallies.

        It exits once it has read its copies to the end (closed), predicted
        them, and written and synced its log. Its segments stay in the
        spool, read as they are, until a log closed or opened on the
        machine rolls them over (the worker's own, when it stops).
        """
        process, control, copies = self._process, self._control, self._copies
        self._process = self._control = self._copies = None
        if control is not None:
            _unwatch(control)
        if copies is not None:
            copies.close()  # what it holds is the process's to read: a socket pair's end
        if process is not None:
            try:
                await asyncio.to_thread(process.wait, _EXIT_S)
            except subprocess.TimeoutExpired:
                _log.error(
                    "shadow %s: its process did not predict its last copies and exit in "
                    "%.0f s; stopping it without them",
                    self.model.ref,
                    _EXIT_S,
                )
                process.kill()
                await asyncio.to_thread(process.wait)
        if control is not None:
            self._inbox += _read_left(control)
            self._deliver_told()
            control.close()


def _unwatch(control: socket.socket) -> None:
    """Stop reading ``control`` on the loop (it may not be watched: it never was, or no more)."""
    asyncio.get_running_loop().remove_reader(control.fileno())


def _read_left(sock: socket.socket) -> bytes:
    """What ``sock`` (non-blocking) holds now, up to its end or what has not come yet."""
    parts = []
    with contextlib.suppress(BlockingIOError, OSError):
        while data := sock.recv(1 << 16):
            parts.append(data)
    return b"".join(parts)


def _framed(message: object) -> bytes:
    """A control message: its pickle's size, then its pickle."""
    data = pickle.dumps(message, protocol=5)
    return _FRAME.pack(len(data)) + data


async def _receive(sock: socket.socket) -> Any:  # Any: unpickled
    head = await _receive_exactly(sock, _FRAME.size)
    data = await _receive_exactly(sock, _FRAME.unpack(head)[0])
    return pickle.loads(data)  # noqa: S301  (our own process, over a socket pair)


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


# --- the shadow's process -----------------------------------------------------------------


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
        control.sendall(_framed(f"{type(exc).__name__}: {exc}"))
        return 1
    # Only now: at the lowest priority from the start, a busy machine starved the imports
    # and the model's load, and with them the deployment change that waited for them.
    _lowest_priority()
    predicting = _Predicting(model, sink, log, lag_bounds)
    try:
        control.sendall(_framed("ready"))
        untold: _Reply | None = None
        told = time.monotonic()
        while True:
            if select.select([copies], [], [], _TALLY_S)[0]:
                message = _read_copies(copies)
                if message is None:
                    break
                offset, record = message
                pause = functools.partial(_pause_unless_readable, copies)
                untold = _added(untold, predicting.predict(offset, record, pause))
            if untold is not None and (untold[3] or time.monotonic() - told >= _TALLY_S):
                control.sendall(_framed(untold))
                untold, told = None, time.monotonic()
        if untold is not None:
            control.sendall(_framed(untold))
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

    def predict(self, offset: float, record: pa.RecordBatch, pause: Callable[[], None]) -> _Reply:
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
        if self.sink is not None and self.log is not None and parts:
            self.sink.append_record(self.log.deployment, self._logged(record, parts, lags))
        return self._told(starts, parts, lags, failed)

    def _told(
        self,
        starts: np.ndarray,
        parts: list[tuple[int, int, np.ndarray]],
        lags: np.ndarray,
        failed: list[str],
    ) -> _Reply:
        """``Tally``'s fields for the predicted ``parts``: a lag for each copy (its first row)."""
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
        outputs = [part[2] for part in parts]
        values = None
        if outputs and all(o.ndim == 1 and o.dtype.kind in "fiub" for o in outputs):
            values = _sums(tally(np.concatenate(outputs).astype(np.float64, copy=False)))
        return calls, lagged, values, failed

    def _logged(
        self, record: pa.RecordBatch, parts: list[tuple[int, int, np.ndarray]], lags: np.ndarray
    ) -> pa.RecordBatch:
        """The log's rows for the ``parts`` of ``record`` predicted (each its first row, past
        its last, outputs); their latency is each copy's lag."""
        assert self.log is not None, "only when logging"
        if len(parts) == 1 and parts[0][:2] == (0, record.num_rows):
            copies, outputs, latencies = record, parts[0][2], lags
        else:
            copies = pa.concat_batches([record.slice(a, b - a) for a, b, _ in parts])
            outputs = np.concatenate([part[2] for part in parts])
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


def _added(before: _Reply | None, reply: _Reply) -> _Reply:
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
    head = _read_exactly(sock, _HEAD.size)
    if head is None:
        return None
    size, offset = _HEAD.unpack(head)
    body = _read_exactly(sock, size)
    if body is None:
        return None
    return offset, pa.ipc.open_stream(pa.py_buffer(body)).read_next_batch()


def _read(sock: socket.socket) -> Any:  # Any: unpickled
    """The next control message, or ``None`` once the other end is closed."""
    head = _read_exactly(sock, _FRAME.size)
    data = None if head is None else _read_exactly(sock, _FRAME.unpack(head)[0])
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
