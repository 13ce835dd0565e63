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

The shadow's process (``_shadow_child``, at the idle CPU priority) loads
the same model version through the registry, predicts the copies, logs them
to a prediction log of its own (``ShadowLog``) and tells what the serving
process's metrics need, added up (``Tally``).

When the process dies, what waited for it is lost, copies are shed until a
new process has loaded the model, and it is started again. Closing a shadow
waits until the server's log has written what it was given, sends the rest,
and lets the process predict it all and exit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from mlcycle.errors import MlcycleError
from mlcycle.serve._metrics import Observed
from mlcycle.serve._shadow_child import FRAME, HEAD, Reply, framed

if TYPE_CHECKING:
    from mlcycle.registry import ModelRegistry
    from mlcycle.serve._model import ServedModel
    from mlcycle.serve._predlog import PredictionLog, Tee

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
_MAX_PARTS = 512
"""The most buffers one ``sendmsg`` is given (Linux takes up to 1,024)."""
_SEND_BUFFER = 4 << 20
"""The copies socket's send buffer asked for (the system may give less)."""
_START_TIMEOUT_S = 300.0
_EXIT_S = 60.0
"""How long a closing shadow's process may take to predict its last copies, and then to
write out its log and exit, before it is killed."""
_RESTART_S = (1.0, 30.0)
"""The first and the longest wait before a dead shadow process is started again."""
_WARN_EVERY_S = 60.0
_CHILD = (
    "import sys; from mlcycle.serve._shadow_child import main; "
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
            head = HEAD.pack(body.size, self._clock() - time.time())
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
        while len(self._inbox) >= FRAME.size:
            end = FRAME.size + FRAME.unpack_from(self._inbox)[0]
            if len(self._inbox) < end:
                return
            reply: Reply = pickle.loads(self._inbox[FRAME.size : end])  # noqa: S301  (our process)
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
            await asyncio.get_running_loop().sock_sendall(control, framed(hello))
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


async def _receive(sock: socket.socket) -> Any:  # Any: unpickled
    head = await _receive_exactly(sock, FRAME.size)
    data = await _receive_exactly(sock, FRAME.unpack(head)[0])
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
