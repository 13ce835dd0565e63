"""A shadow's copies come from the prediction log's writer, which never waits for a shadow."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pytest
from tests.serve.conftest import PID_SHADOWED, client_for, logged_rows, shadow_log, until

from mlcycle.errors import ValidationFailed
from mlcycle.registry import ColumnSpec
from mlcycle.serve import PredictionBatch, to_record_batch
from mlcycle.serve._model import load_model
from mlcycle.serve._rows import Schema
from mlcycle.serve._shadow import ShadowProcess, Tally, _Tee
from mlcycle.serve._shadow_child import _chunks, _read_copies, _request_starts, rows_of
from mlcycle.workspace import Workspace, open_registry

pytestmark = pytest.mark.anyio
PREDICT = "/v1/models/bikes:predict"


def answered(*ids: float, deployment: str = "bikes") -> PredictionBatch:
    """The log's batch of single-row requests ``r<id>`` answered by ``pid`` 1."""
    return PredictionBatch(
        deployment=deployment,
        model="pid",
        model_version=1,
        variant="live",
        shadow=False,
        request_ids=[f"r{n:g}" for n in ids],
        row_indexes=[0] * len(ids),
        times=[time.time()] * len(ids),
        latency_ms=[1.0] * len(ids),
        inputs={"id": np.array(ids, dtype=np.float64)},
        outputs=np.zeros(len(ids)),
    )


def shed_total(metrics: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("mlcycle_serve_shed_total{") and 'reason="shadow"' in line
    )


async def test_a_stopped_shadow_never_holds_up_the_log_and_every_copy_is_logged_or_shed(
    pid_workspace: Workspace,
) -> None:
    """The shadow's process is stopped (SIGSTOP) under 40 requests of 1,000 rows.

    Each is flushed through the log on its own, so each is one record batch
    for the shadow. The log's writer goes on writing every answered row:
    what the socket and the backlog of ``shadow_queue`` rows cannot hold is
    shed and counted. Woken, the process predicts what waited, so every copy
    is either logged by the shadow or counted as shed: none is lost unsaid.
    """
    sink = pid_workspace.prediction_log()
    async with client_for(pid_workspace, PID_SHADOWED, sink=sink, shadow_queue=2_500) as (
        client,
        server,
    ):
        shadow = server.routes.shadows[0].queue
        child = shadow.pid
        assert child is not None
        assert shadow._copies is not None
        # The system may grant megabytes; a small buffer makes the backlog fill at once.
        shadow._copies.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        os.kill(child, signal.SIGSTOP)
        try:
            for first in range(0, 40_000, 1_000):
                instances = [{"id": float(n)} for n in range(first, first + 1_000)]
                answer = await client.post(PREDICT, json={"instances": instances})
                assert answer.status_code == 200
                await asyncio.to_thread(sink.flush)  # returns: the writer never waits
            written = [row for row in logged_rows(pid_workspace) if not row["shadow"]]
            shed = shed_total((await client.get("/metrics")).text)
        finally:
            os.kill(child, signal.SIGCONT)
    copies = shadow_log(pid_workspace)
    assert len(written) == 40_000
    assert shed >= 10_000, "copies were shed while the process was stopped"
    assert shed % 1_000 == 0, "a record batch is shed whole"
    assert len(copies) + shed == 40_000
    assert {copy["output"] for copy in copies} == {float(child)}
    assert len({(copy["request_id"], copy["row_index"]) for copy in copies}) == len(copies)


def test_a_message_larger_than_the_socket_takes_at_once_arrives_whole() -> None:
    """The tee sends what the socket takes, keeps the rest for the next round, sheds past its
    backlog, and never waits."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    shed: list[int] = []
    tee = _Tee(max_rows=6_000, shedding=lambda: False, shed=shed.append, clock=time.time)
    tee.attach(ours)
    first = to_record_batch([answered(*range(5_000))])
    second = to_record_batch([answered(*range(5_000, 5_010))])
    try:
        tee.take(first)
        tee.send()  # returns at once with most of the message unsent
        assert tee._out, "the message did not fit in the socket's buffer"
        tee.take(to_record_batch([answered(*range(2_000))]))  # 7,000 rows would not fit
        assert shed == [2_000]
        with ThreadPoolExecutor(1) as reader:  # the process's side reads as it comes
            reading = reader.submit(_read_copies, theirs)
            while not reading.done():  # the writer's rounds
                tee.send()
                time.sleep(0.001)
            received = reading.result()
        tee.take(second)  # the backlog is empty again: it fits
        tee.send()
        message = _read_copies(theirs)
    finally:
        ours.close()
        theirs.close()
    assert received is not None
    assert message is not None
    copied = first.select(["request_id", "row_index", "time", "inputs"])
    assert received[1].to_pydict() == copied.to_pydict()
    assert message[1].column("request_id").to_pylist() == [f"r{n}" for n in range(5_000, 5_010)]
    assert shed == [2_000]


def test_a_tee_whose_process_closed_its_socket_stops_sending() -> None:
    """The process died: the writer's send fails once, quietly; the loop learns it elsewhere."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    shed: list[int] = []
    tee = _Tee(max_rows=100, shedding=lambda: False, shed=shed.append, clock=time.time)
    tee.attach(ours)
    theirs.close()
    tee.take(to_record_batch([answered(1, 2)]))
    tee.send()
    tee.take(to_record_batch([answered(3)]))  # no socket any more: shed
    left, rows = tee.detach()
    ours.close()
    assert shed == [1]
    assert rows == 2
    assert left


async def test_the_process_tells_its_tally_at_most_once_a_second_and_no_count_is_lost(
    pid_workspace: Workspace,
) -> None:
    """A failed copy is told at once; otherwise the tallies of a second go as one, the rest
    after a quiet second or when the shadow closes, so every predicted row is counted."""
    log = pid_workspace.prediction_log()
    model = load_model(pid_workspace.registry, "pid/1", max_rows=100)
    told: list[Tally] = []
    shadow = ShadowProcess(
        model,
        opener=functools.partial(open_registry, pid_workspace.settings),
        source=log,
        deployment="bikes",
        max_rows=100,
        max_queue=1_000,
        done=told.append,
        shedding=lambda: False,
        shed=lambda rows: None,
    )

    def counted() -> int:
        return sum(sum(tally.calls) for tally in told)

    await shadow.start()
    try:
        log.append(answered(-1, 0))  # -1 breaks the model: the copies are predicted alone
        await until(lambda: bool(told))
        assert (told[0].calls, len(told[0].failed)) == ([1], 1)
        told.clear()
        for n in range(25):  # about 13 of the writer's rounds, in 2.5 s
            log.append(answered(n))
            await asyncio.sleep(0.1)
        await until(lambda: counted() == 25)  # told after a quiet second, unasked
        assert 2 <= len(told) <= 4, "a tally a second, not one a message"
        log.append(answered(25, 26, 27))
    finally:
        await shadow.close()
        log.close()
    assert counted() == 28, "closing waited for the tally of the last copies"
    assert not any(tally.failed for tally in told)


def test_a_shadow_reads_the_logged_inputs_it_takes_by_name() -> None:
    """Columns in the shadow's order, integers checked, other kinds as requests decode them."""
    logged = to_record_batch(
        [
            PredictionBatch(
                deployment="bikes",
                model="m",
                model_version=1,
                variant="live",
                shadow=False,
                request_ids=["a", "b"],
                row_indexes=[0, 0],
                times=[1.9e9, 1.9e9],
                latency_ms=[1.0, 1.0],
                inputs={
                    "x": np.array([0.5, 1.5]),
                    "hour": np.array([3.0, 4.0]),
                    "season": np.array(["spring", None], dtype=object),
                    "when": np.array(["2012-01-01T03:00", "2012-01-01T04:00"], "datetime64[us]"),
                },
                outputs=np.zeros(2),
            )
        ]
    ).column("inputs")
    numbers = Schema(inputs=(ColumnSpec("hour", "int64"), ColumnSpec("x", "float64")), max_rows=10)
    rows = rows_of(numbers, logged)
    assert rows.matrix is not None
    assert rows.matrix.tolist() == [[3.0, 0.5], [4.0, 1.5]]
    mixed = Schema(
        inputs=(
            ColumnSpec("season", "string", nullable=True),
            ColumnSpec("when", "datetime"),
        ),
        max_rows=10,
    )
    columns = rows_of(mixed, logged).columns
    assert columns["season"].tolist() == ["spring", None]
    assert columns["when"].dtype == np.dtype("datetime64[ns]")
    with pytest.raises(ValidationFailed, match=r"no input 'temp', which the shadow takes"):
        rows_of(Schema(inputs=(ColumnSpec("temp", "float64"),), max_rows=10), logged)
    with pytest.raises(ValidationFailed, match=r"column 'x': expected an integer"):
        rows_of(Schema(inputs=(ColumnSpec("x", "int64"),), max_rows=10), logged)
    with pytest.raises(ValidationFailed, match=r"column 'season'"):
        rows_of(Schema(inputs=(ColumnSpec("season", "float64"),), max_rows=10), logged)


def test_the_process_predicts_a_message_in_parts_that_never_cut_a_request() -> None:
    """Parts cut at the first request start at or past each multiple of 128 rows: a request
    is never cut, so a part holding a larger one is larger."""
    sizes = [1] * 200 + [300] + [50] * 3
    ids = [f"r{n}" for n, size in enumerate(sizes) for _ in range(size)]
    parts = _chunks(_request_starts(pa.array(ids)), len(ids))
    assert parts == [(0, 128), (128, 500), (500, 550), (550, 650)]
    assert _chunks(_request_starts(pa.array(["a"] * 5)), 5) == [(0, 5)]
