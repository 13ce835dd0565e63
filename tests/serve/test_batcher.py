"""The batcher on its own: one call a loop round, waits only while requests arrive, never hangs.

The server tests (``test_batching``) load it through real HTTP; these drive
a ``Batcher`` directly on the running loop, with a model whose predict is
plain Python, to pin what its callbacks promise.
"""

from __future__ import annotations

import asyncio
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
    """Doubles its input and remembers how many rows each call had."""

    def __init__(self) -> None:
        self.calls: list[int] = []

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


async def test_a_wait_ends_at_max_wait_when_the_arriving_request_never_comes() -> None:
    model = Model()
    queue = batcher(model, max_wait_s=0.05, arriving=lambda: 1)
    alone = job(7)
    queue.submit(alone)
    assert await answers([alone]) == [14]
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
