"""The batcher on its own: one call a loop round, waits only while requests arrive, never hangs.

The server tests (``test_batching``) load it through real HTTP; these drive
a ``Batcher`` directly on the running loop, with a model whose predict is
plain Python, to pin what its callbacks promise.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from mlcycle.registry import ColumnSpec, Signature
from mlcycle.serve._batching import Batcher, Job
from mlcycle.serve._model import ServedModel
from mlcycle.serve._rows import Rows, Schema

pytestmark = pytest.mark.anyio
SIGNATURE = Signature(inputs=(ColumnSpec("x", "float64"),), outputs=(ColumnSpec("y", "float64"),))
SETTLED_S = 5.0  # far beyond any wait here: a future still pending then is hanging


class Model:
    """Doubles its input and remembers how many rows each call had.

    ``first``, when given, sees each call's rows before the model does: it
    may block (a slow model) or raise (a broken one).
    """

    def __init__(self, first: Callable[[Rows], None] | None = None) -> None:
        self.calls: list[int] = []
        self.first = first

    def served(self) -> ServedModel:
        return ServedModel(
            name="double",
            version=1,
            signature=SIGNATURE,
            schema=Schema.of(SIGNATURE, max_rows=100),
            runtime="onnx",
            predict=self.predict,
        )

    def predict(self, rows: Rows) -> np.ndarray:
        assert rows.matrix is not None
        if self.first is not None:
            self.first(rows)
        self.calls.append(rows.count)
        return rows.matrix[:, 0] * 2


def job(value: float) -> Job:
    return Job(
        rows=Rows(1, ["x"], matrix=np.array([[value]])),
        request_id=f"r{value:g}",
        arrived=time.perf_counter(),
        time=time.time(),
        future=asyncio.get_running_loop().create_future(),
    )


def batcher(
    model: Model,
    *,
    inline: bool = True,
    max_wait_s: float = 0.0,
    arriving: Callable[[], int] = lambda: 0,
    done: Callable[[Sequence[Job], Rows, np.ndarray, float], None] = lambda *_: None,
) -> Batcher:
    return Batcher(
        model.served(),
        max_rows=8,
        max_wait_s=max_wait_s,
        arriving=arriving,
        done=done,
        inline=inline,
    )


async def answers(jobs: Sequence[Job]) -> list[float]:
    futures = [j.future for j in jobs if j.future is not None]
    done = await asyncio.wait_for(asyncio.gather(*futures), SETTLED_S)
    return [float(outputs[0]) for outputs in done]


@pytest.mark.parametrize("inline", [True, False], ids=["on the loop", "on its thread"])
async def test_jobs_queued_in_one_loop_round_share_one_predict_call(inline: bool) -> None:
    model = Model()
    queue = batcher(model, inline=inline)
    jobs = [job(value) for value in (1, 2, 3, 4, 5)]
    for each in jobs:
        queue.submit(each)
    assert await answers(jobs) == [2, 4, 6, 8, 10]
    assert model.calls == [5]
    more = [job(6)]
    queue.submit(more[0])
    assert await answers(more) == [12]
    assert model.calls == [5, 1]
    await queue.close()


@pytest.mark.parametrize("inline", [True, False], ids=["on the loop", "on its thread"])
async def test_a_failure_outside_the_model_fails_its_jobs_and_the_next_call_still_runs(
    inline: bool,
) -> None:
    model = Model()
    failures = [RuntimeError("the sink broke")]

    def done(*_: object) -> None:
        if failures:
            raise failures.pop()

    queue = batcher(model, inline=inline, done=done)
    broken = [job(1), job(2)]
    for each in broken:
        queue.submit(each)
    for each in broken:
        assert each.future is not None
        with pytest.raises(RuntimeError, match="the sink broke"):
            await asyncio.wait_for(each.future, SETTLED_S)
    after = [job(3)]
    queue.submit(after[0])
    assert await answers(after) == [6]
    await queue.close()


async def test_rows_wait_for_a_request_still_arriving_then_go_in_one_call() -> None:
    model = Model()
    arriving = [1]
    queue = batcher(model, max_wait_s=600, arriving=lambda: arriving[0])
    first = job(1)
    queue.submit(first)
    for _ in range(20):
        await asyncio.sleep(0)
    assert first.future is not None
    assert not first.future.done(), "a request is still arriving: the rows wait for it"
    arriving[0] = 0
    second = job(2)
    queue.submit(second)
    assert await answers([first, second]) == [2, 4]
    assert model.calls == [2]
    await queue.close()


async def test_rows_waiting_for_a_request_go_once_none_is_arriving() -> None:
    model = Model()
    arriving = [1]
    queue = batcher(model, max_wait_s=600, arriving=lambda: arriving[0])
    first = job(1)
    queue.submit(first)
    queue.arrivals_ended()  # told while one is still arriving: the rows keep waiting
    for _ in range(20):
        await asyncio.sleep(0)
    assert first.future is not None
    assert not first.future.done()
    arriving[0] = 0  # that request was refused: it never comes to this queue
    queue.arrivals_ended()
    assert await answers([first]) == [2]
    assert model.calls == [1]
    await queue.close()


async def test_close_predicts_what_waits_without_waiting_for_more() -> None:
    model = Model()
    queue = batcher(model, max_wait_s=600, arriving=lambda: 1)
    waiting = [job(1), job(2)]
    for each in waiting:
        queue.submit(each)
    await asyncio.wait_for(queue.close(), SETTLED_S)
    assert all(each.future is not None and each.future.done() for each in waiting)
    assert await answers(waiting) == [2, 4]
    assert not queue.busy


async def test_a_job_queued_after_its_thread_closed_gets_an_error_instead_of_hanging() -> None:
    model = Model()
    queue = batcher(model, inline=False)
    await queue.close()
    late = job(1)
    queue.submit(late)
    assert late.future is not None
    with pytest.raises(RuntimeError, match="shutdown"):
        await asyncio.wait_for(late.future, SETTLED_S)


async def test_jobs_queued_while_the_thread_predicts_go_together_in_the_next_call() -> None:
    started, release = threading.Event(), threading.Event()

    def slow(rows: Rows) -> None:
        del rows
        started.set()
        release.wait(SETTLED_S)

    model = Model(first=slow)
    queue = batcher(model, inline=False)
    first = job(1)
    queue.submit(first)
    assert await asyncio.to_thread(started.wait, SETTLED_S)
    later = [job(2), job(3)]
    for each in later:  # in separate loop rounds: they wait for the call, not for each other
        queue.submit(each)
        for _ in range(5):
            await asyncio.sleep(0)
    release.set()
    assert await answers([first, *later]) == [2, 4, 6]
    assert model.calls == [1, 2]
    await queue.close()


@pytest.mark.parametrize("inline", [True, False], ids=["on the loop", "on its thread"])
async def test_no_call_exceeds_the_limit_and_a_large_request_gets_its_rows_in_order(
    inline: bool,
) -> None:
    model = Model()
    queue = batcher(model, inline=inline)
    values = np.arange(11.0)
    large = Job(
        rows=Rows(11, ["x"], matrix=values[:, None]),
        request_id="large",
        arrived=time.perf_counter(),
        time=time.time(),
        future=asyncio.get_running_loop().create_future(),
    )
    small = [job(value) for value in (100, 200, 300, 400, 500, 600, 700)]
    queue.submit(large)
    for each in small:
        queue.submit(each)
    assert large.future is not None
    outputs = await asyncio.wait_for(large.future, SETTLED_S)
    assert outputs.tolist() == (values * 2).tolist()
    assert await answers(small) == [200, 400, 600, 800, 1000, 1200, 1400]
    assert max(model.calls) <= 8
    assert sum(model.calls) == 18
    await queue.close()


def submit_large_then_small(queue: Batcher) -> tuple[Job, list[Job]]:
    """Queue a request of 11 rows (0 to 10; two parts of 8 and 3), then two of one row each."""
    large = Job(
        rows=Rows(11, ["x"], matrix=np.arange(11.0)[:, None]),
        request_id="large",
        arrived=time.perf_counter(),
        time=time.time(),
        future=asyncio.get_running_loop().create_future(),
    )
    small = [job(100), job(200)]
    queue.submit(large)
    for each in small:
        queue.submit(each)
    return large, small


Logged = list[tuple[list[str], list[float], list[float]]]


def logging_into(logged: Logged) -> Callable[[Sequence[Job], Rows, np.ndarray, float], None]:
    """A ``done`` that keeps each call's request ids, input values and outputs."""

    def done(jobs: Sequence[Job], rows: Rows, outputs: np.ndarray, _now: float) -> None:
        assert rows.matrix is not None
        logged.append(([j.request_id for j in jobs], rows.matrix[:, 0].tolist(), outputs.tolist()))

    return done


@pytest.mark.parametrize("inline", [True, False], ids=["on the loop", "on its thread"])
async def test_a_large_request_is_logged_whole_after_its_last_part(
    inline: bool,
) -> None:
    model = Model()
    logged: Logged = []
    sizes: list[int] = []
    queue = Batcher(
        model.served(),
        max_rows=8,
        max_wait_s=0.0,
        arriving=lambda: 0,
        done=logging_into(logged),
        called=sizes.append,
        inline=inline,
    )
    large, small = submit_large_then_small(queue)
    assert large.future is not None
    await asyncio.wait_for(large.future, SETTLED_S)
    assert await answers(small) == [200, 400]
    await queue.close()
    assert sizes == [8, 5]  # the calls: the first part alone, then the last part with the rest
    # Nothing of the request until its last part; then all of it, with the call's other rows.
    assert logged == [
        (["large", "r100", "r200"], [*range(11), 100, 200], [*range(0, 22, 2), 200, 400])
    ]


@pytest.mark.parametrize("inline", [True, False], ids=["on the loop", "on its thread"])
@pytest.mark.parametrize("culprit", [2.0, 9.0], ids=["first part fails", "last part fails"])
async def test_a_large_request_failing_in_one_part_is_not_logged(
    inline: bool, culprit: float
) -> None:
    def refuse(rows: Rows) -> None:
        assert rows.matrix is not None
        if culprit in rows.matrix[:, 0]:
            raise ValueError(f"cannot predict {culprit}")

    model = Model(first=refuse)
    logged: Logged = []
    queue = batcher(model, inline=inline, done=logging_into(logged))
    large, small = submit_large_then_small(queue)
    assert large.future is not None
    with pytest.raises(ValueError, match="cannot predict"):
        await asyncio.wait_for(large.future, SETTLED_S)
    assert await answers(small) == [200, 400]
    await queue.close()
    failed_part = 8 if culprit < 8 else 3
    assert sum(model.calls) == 13 - failed_part  # every row predicted but the failed part's
    logged_ids = [request_id for ids, _, _ in logged for request_id in ids]
    assert sorted(logged_ids) == ["r100", "r200"]


async def test_a_full_batch_does_not_wait_for_requests_still_arriving() -> None:
    model = Model()
    queue = batcher(model, max_wait_s=600, arriving=lambda: 1)
    full = [job(value) for value in range(8)]
    for each in full:
        queue.submit(each)
    assert await answers(full) == [2 * value for value in range(8)]
    assert model.calls == [8]
    await queue.close()


async def test_each_batch_waits_for_its_own_deadline() -> None:
    model = Model()
    queue = batcher(model, max_wait_s=0.3, arriving=lambda: 1)
    first = job(1)
    queue.submit(first)
    assert await answers([first]) == [2], "the request that never comes is waited for no longer"
    second = job(2)
    queue.submit(second)
    for _ in range(20):
        await asyncio.sleep(0)
    assert second.future is not None
    assert not second.future.done(), "the first batch's deadline has passed, not the second's"
    assert await answers([second]) == [4]
    await queue.close()


async def test_when_a_merged_call_raises_only_the_culprit_fails() -> None:

    def refuses_13(rows: Rows) -> None:
        assert rows.matrix is not None
        if (rows.matrix == 13).any():
            raise ValueError("13 is refused")

    model = Model(first=refuses_13)
    queue = batcher(model)
    good, culprit, other = job(1), job(13), job(2)
    for each in (good, culprit, other):
        queue.submit(each)
    assert await answers([good, other]) == [2, 4]
    assert culprit.future is not None
    with pytest.raises(ValueError, match="13 is refused"):
        await asyncio.wait_for(culprit.future, SETTLED_S)
    await queue.close()


@pytest.mark.parametrize("inline", [True, False], ids=["on the loop", "on its thread"])
@pytest.mark.parametrize("raised", [StopIteration, asyncio.CancelledError])
async def test_a_model_raising_what_a_future_cannot_hold_answers_an_error(
    inline: bool, raised: type[BaseException]
) -> None:

    def breaks(rows: Rows) -> None:
        del rows
        raise raised("odd")

    model = Model(first=breaks)
    queue = batcher(model, inline=inline)
    jobs = [job(1), job(2)]
    for each in jobs:
        queue.submit(each)
    for each in jobs:
        assert each.future is not None
        with pytest.raises(RuntimeError, match=raised.__name__):
            await asyncio.wait_for(each.future, SETTLED_S)
    await asyncio.wait_for(queue.close(), SETTLED_S)


@pytest.mark.parametrize("inline", [True, False], ids=["on the loop", "on its thread"])
async def test_two_closes_at_once_both_return(inline: bool) -> None:
    model = Model()
    queue = batcher(model, inline=inline, max_wait_s=600, arriving=lambda: 1)
    waiting = job(1)
    queue.submit(waiting)
    await asyncio.wait_for(asyncio.gather(queue.close(), queue.close()), SETTLED_S)
    assert await answers([waiting]) == [2]
