"""Adaptive micro-batching: concurrent requests for one model merged into one predict call.

Each model variant has one ``Batcher``: a queue of jobs, flushed by loop
callbacks that take as many queued rows as fit in ``max_rows`` and predict
them in one call. A slow model predicts on the batcher's own thread, so the
event loop keeps reading requests meanwhile; a fast one (``inline``: ONNX Runtime, a
few microseconds a row) predicts on the loop itself, because handing a
batch to a thread and back costs more than the prediction. It waits for
more rows (at most ``max_wait_s``) only while other requests are still
being read and checked (``arriving() > 0``), so a lone request is never
held back. A request larger than ``max_rows`` is queued as parts of
``max_rows`` rows whose answers are joined: no predict call ever sees more.
Such a request is logged whole, once every part is predicted (shadows
take their copies from the log): one that failed part way was never
answered, so none of it is.

Every job gets exactly its own slice of the outputs. When a merged call
raises, each job is predicted again on its own, so only the request that
breaks the model gets the error.

Shadow variants do not use a ``Batcher``: they take copies of what was
answered from the prediction log's writer and predict in a process of
their own (``_shadow``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from mlcycle.serve._model import ServedModel
from mlcycle.serve._rows import Rows, concat_rows

__all__ = ["Batcher", "Job", "row_columns"]


@dataclass(slots=True)
class Job:
    """One request's rows waiting for a prediction; ``future`` gets its outputs."""

    rows: Rows
    request_id: str
    arrived: float
    """``time.perf_counter()`` when the request arrived."""
    time: float
    """Unix epoch seconds when the request arrived."""
    future: asyncio.Future[np.ndarray]
    first_row: int = 0
    """The index, within its request, of this job's first row (a part of a large request)."""
    whole: _Split | None = None
    """The request this job is a part of, if it is one."""


class _Split:
    """A request larger than ``max_rows``: its parts' outputs, kept until every part has one.

    Only the batcher's predict calls touch it, one at a time (on its thread
    or the loop).
    """

    __slots__ = ("failed", "job", "missing", "outputs")

    def __init__(self, job: Job, parts: int) -> None:
        self.job = job
        self.outputs: list[np.ndarray] = [np.empty(0)] * parts
        self.missing = parts
        """Parts not predicted yet: each is predicted once (a failed one never is)."""
        self.failed = False

    def predicted(self, part: Job, outputs: np.ndarray, max_rows: int) -> np.ndarray | None:
        """Keep a part's outputs; the whole request's, once this was the last part missing."""
        self.outputs[part.first_row // max_rows] = outputs
        self.missing -= 1
        if self.failed or self.missing:
            return None
        return np.concatenate(self.outputs)


Outcome = tuple[Job, "np.ndarray | BaseException"]
"""A job and its outputs, or the error its prediction raised."""

BatchDone = Callable[[Sequence[Job], Rows, np.ndarray, float], None]
"""Called after each predict call, on its thread or the loop: jobs, their rows, outputs, now.

The jobs are the requests the call answered whole: a part of a larger
request is not among them, but the whole request is, after its last part.
"""


class Batcher:
    """The micro-batching queue of one served model variant (see the module).

    It runs on loop callbacks, not a task of its own: the first job queued
    schedules a flush for after what the loop has ready now (the other
    requests read in the same round), so a batch costs one callback, not a
    task's wake-up and its event.
    """

    def __init__(
        self,
        model: ServedModel,
        *,
        max_rows: int,
        max_wait_s: float,
        arriving: Callable[[], int],
        done: BatchDone,
        called: Callable[[int], None] | None = None,
        inline: bool = False,
    ) -> None:
        self.model = model
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self._arriving = arriving
        self._done = done
        self._called = called
        """Told each predict call's row count, on its thread or the loop."""
        self._loop = asyncio.get_running_loop()
        self._queue: collections.deque[Job] = collections.deque()
        self._queued_rows = 0
        self._flushing: asyncio.Handle | None = None
        """The flush to come: soon, or when the wait for more rows ends."""
        self._deadline: float | None = None
        """When the queued rows stop waiting for more (loop time), once they started to."""
        self._closing = False
        self._predicting = False
        self._emptied: asyncio.Future[None] | None = None
        """What ``close`` waits for: nothing queued and no predict call running."""
        self._thread = (
            None if inline else ThreadPoolExecutor(1, thread_name_prefix=f"predict-{model.ref}")
        )

    def submit(self, job: Job) -> None:
        """Queue a job (in parts of ``max_rows`` rows when larger); its future gets its outputs."""
        if job.rows.count <= self.max_rows:
            self._enqueue(job)
            return
        loop = job.future.get_loop()
        starts = range(0, job.rows.count, self.max_rows)
        whole = _Split(job, len(starts))
        parts = [
            Job(
                rows=job.rows.slice(start, start + self.max_rows),
                request_id=job.request_id,
                arrived=job.arrived,
                time=job.time,
                future=loop.create_future(),
                first_row=start,
                whole=whole,
            )
            for start in starts
        ]
        joined = asyncio.gather(*(part.future for part in parts))
        joined.add_done_callback(functools.partial(_join, job.future))
        for part in parts:
            self._enqueue(part)

    def _enqueue(self, job: Job) -> None:
        self._queue.append(job)
        self._queued_rows += job.rows.count
        self._schedule()

    def arrivals_ended(self) -> None:
        """No request is being read any more: rows waiting for more see whether they can go."""
        if isinstance(self._flushing, asyncio.TimerHandle):
            self._schedule()

    @property
    def queued(self) -> int:
        """Jobs waiting for a predict call."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """Whether jobs are queued or a predict call is running."""
        return self._predicting or bool(self._queue)

    async def close(self) -> None:
        """Predict what is queued, then stop."""
        self._closing = True
        self._schedule()
        while self.busy:
            if self._emptied is None or self._emptied.done():  # one future for every closer
                self._emptied = self._loop.create_future()
            await asyncio.shield(self._emptied)
        if self._thread is not None:
            self._thread.shutdown(wait=True)

    def _schedule(self) -> None:
        """Flush soon: after the callbacks ready now, or at once when a wait ends early."""
        if self._predicting:
            return  # the call's end flushes what came meanwhile
        if self._flushing is not None:
            if not isinstance(self._flushing, asyncio.TimerHandle):
                return  # already soon
            self._flushing.cancel()  # waiting for more rows: see whether that wait ends now
        self._flushing = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Predict the oldest jobs that fit in one call, unless more rows are worth waiting for."""
        self._flushing = None
        if not self._queue:
            return
        if self._wait():
            return
        self._deadline = None
        jobs = self._take()
        if self._thread is not None:
            try:
                call = self._loop.run_in_executor(self._thread, self._predict, jobs)
            except RuntimeError as exc:  # the thread was shut down: a job queued after close
                self._finish([(job, exc) for job in jobs])
                return
            self._predicting = True
            call.add_done_callback(functools.partial(self._predicted, jobs))
            return
        try:
            outcomes = self._predict(jobs)
        except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001  (none may hang)
            outcomes = [(job, exc) for job in jobs]
        self._finish(outcomes)

    def _predicted(self, jobs: list[Job], call: asyncio.Future[list[Outcome]]) -> None:
        """A predict call on the thread ended: answer its jobs, then flush what waits."""
        self._predicting = False
        error = None if call.cancelled() else call.exception()
        if call.cancelled() or error is not None:
            failure = error or asyncio.CancelledError("the predict call was cancelled")
            self._finish([(job, failure) for job in jobs])
            return
        self._finish(call.result())

    def _finish(self, outcomes: list[Outcome]) -> None:
        """Answer the jobs, then flush what waits (or wake ``close``)."""
        for job, outcome in outcomes:
            if job.whole is not None and isinstance(outcome, BaseException):
                job.whole.failed = True  # before the next call: its other parts are not logged
        _resolve(outcomes)
        if self._queue:
            self._schedule()  # after the loop has read the requests that came meanwhile
        else:
            self._note_empty()

    def _note_empty(self) -> None:
        """Wake ``close`` once nothing is queued and no call runs."""
        if self._emptied is not None and not self._emptied.done() and not self.busy:
            self._emptied.set_result(None)

    def _wait(self) -> bool:
        """Whether to wait for more rows (while requests are still arriving, up to ``max_wait_s``).

        When waiting, a flush is set for the deadline; each job queued
        meanwhile flushes sooner to see whether the wait is over.
        """
        if (
            self.max_wait_s <= 0
            or self._closing
            or self._queued_rows >= self.max_rows
            or self._arriving() <= 0
        ):
            return False
        now = self._loop.time()
        if self._deadline is None:
            self._deadline = now + self.max_wait_s
        if now >= self._deadline:
            return False
        self._flushing = self._loop.call_at(self._deadline, self._flush)
        return True

    def _take(self) -> list[Job]:
        """The oldest jobs whose rows fit in one call (a larger job alone)."""
        queue = self._queue
        jobs = [queue.popleft()]
        rows = jobs[0].rows.count
        while queue and rows + queue[0].rows.count <= self.max_rows:
            job = queue.popleft()
            rows += job.rows.count
            jobs.append(job)
        self._queued_rows -= rows
        return jobs

    def _predict(self, jobs: list[Job]) -> list[Outcome]:
        """Predict ``jobs`` together; on an error, each alone, so only the culprit fails."""
        try:
            rows = concat_rows([job.rows for job in jobs], self.model.schema.names)
            outputs = self.model.predict(rows)
        except Exception as exc:  # noqa: BLE001  (a model may raise anything; callers get it)
            if len(jobs) == 1:
                return [(jobs[0], exc)]
            return [outcome for job in jobs for outcome in self._predict([job])]
        outcomes: list[Outcome] = []
        offset = 0
        for job in jobs:
            outcomes.append((job, outputs[offset : offset + job.rows.count]))
            offset += job.rows.count
        if self._called is not None:
            self._called(rows.count)
        if any(job.whole is not None for job in jobs):
            whole = self._answered_whole(outcomes)
            if whole is None:
                return outcomes
            jobs, rows, outputs = whole
        self._done(jobs, rows, outputs, time.perf_counter())
        return outcomes

    def _answered_whole(self, outcomes: list[Outcome]) -> tuple[list[Job], Rows, np.ndarray] | None:
        """The requests a call's outcomes answer whole, with their rows and outputs (or none).

        A part of a larger request stays out; the whole request is in once its
        last part is predicted, unless a part failed.
        """
        jobs: list[Job] = []
        outputs: list[np.ndarray] = []
        for job, outcome in outcomes:
            assert not isinstance(outcome, BaseException), "only a call that succeeded"
            if job.whole is None:
                jobs.append(job)
                outputs.append(outcome)
                continue
            joined = job.whole.predicted(job, outcome, self.max_rows)
            if joined is not None:
                jobs.append(job.whole.job)
                outputs.append(joined)
        if not jobs:
            return None
        rows = concat_rows([job.rows for job in jobs], self.model.schema.names)
        return jobs, rows, np.concatenate(outputs)


def row_columns(jobs: Sequence[Job], rows: int) -> tuple[list[str], list[int], list[float]]:
    """Each row's request id, index within its request, and arrival time (Unix epoch seconds).

    ``rows`` is how many rows ``jobs`` hold together; the rows are in the jobs' order.
    """
    if rows == len(jobs):  # single-row requests: the common case, kept cheap
        return (
            [job.request_id for job in jobs],
            [job.first_row for job in jobs],
            [job.time for job in jobs],
        )
    request_ids: list[str] = []
    indexes: list[int] = []
    times: list[float] = []
    for job in jobs:
        count = job.rows.count
        request_ids += [job.request_id] * count
        indexes += range(job.first_row, job.first_row + count)
        times += [job.time] * count
    return request_ids, indexes, times


def _resolve(outcomes: list[Outcome]) -> None:
    """Hand each waiting request its outputs or error (it may have gone away meanwhile)."""
    for job, outcome in outcomes:
        future = job.future
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(_settable(outcome))
        else:
            future.set_result(outcome)


def _settable(error: BaseException) -> BaseException:
    """``error``, or a ``RuntimeError`` from it where a future takes no such exception.

    A future refuses a ``StopIteration``, and a ``CancelledError`` would
    cancel the request's task instead of answering it with an error.
    """
    if isinstance(error, Exception) and not isinstance(error, StopIteration):
        return error
    settable = RuntimeError(f"the model raised {type(error).__name__}: {error}")
    settable.__cause__ = error
    return settable


def _join(target: asyncio.Future[np.ndarray], joined: asyncio.Future[list[np.ndarray]]) -> None:
    """Answer a large request with its parts' outputs, in order (or the first error)."""
    if target.done():
        return
    error = None if joined.cancelled() else joined.exception()
    if joined.cancelled() or error is not None:
        target.set_exception(error or asyncio.CancelledError())
        return
    target.set_result(np.concatenate(joined.result()))
