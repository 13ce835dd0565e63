"""A shadow variant predicts in a process of its own: isolated, restarted, drained on stop."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from tests.serve.conftest import (
    PID_SHADOWED,
    ListSink,
    client_for,
    logged_copies,
    logged_rows,
    serve_settings,
    shadow_log,
    until,
)
from tests.serve.models import Slow
from tests.serve.test_server_log import running

from mlcycle.errors import MlcycleError
from mlcycle.serve import ModelServer, log_table_name
from mlcycle.serve._shadow import ShadowGone
from mlcycle.settings import RegistrySettings, Settings
from mlcycle.store import Deployment, Variant
from mlcycle.workspace import Workspace, open_registry

pytestmark = pytest.mark.anyio
PREDICT = "/v1/models/bikes:predict"


LAG = "mlcycle_serve_shadow_lag_seconds"
DARK = 'deployment="bikes",model="pid",variant="dark",version="1"'


async def shadow_rows(workspace: Workspace, count: int) -> list[float]:
    """The shadow's logged outputs, once ``count`` copies are logged (10 s at most)."""
    return [copy["output"] for copy in await logged_copies(workspace, count)]


async def test_the_shadow_predicts_and_logs_in_a_process_of_its_own(
    pid_workspace: Workspace,
) -> None:
    """The same model answers from the server's process and shadows from another, which logs.

    The server's own log holds only what it answered; its writer hands the
    rows to the shadow's process, whose copies are in the project's log, in
    segments it wrote.
    """
    async with client_for(pid_workspace, PID_SHADOWED) as (client, server):
        child = server.routes.shadows[0].queue.pid
        answers = [
            await client.post(PREDICT, json={"instances": [{"id": float(n)}]}) for n in range(5)
        ]
        logged = await logged_copies(pid_workspace, 5)

        async def measured() -> str:
            """The metrics once the worker has read the process's answer for all five."""
            for _ in range(200):
                text = (await client.get("/metrics")).text
                if f"{LAG}_count{{{DARK}}} 5.0" in text:
                    return text
                await asyncio.sleep(0.05)
            return text

        metrics = await measured()
    assert child is not None
    assert child != os.getpid()
    assert {a.json()["predictions"][0] for a in answers} == {os.getpid()}
    assert [copy["output"] for copy in logged] == [float(child)] * 5
    assert sorted(copy["inputs"]["id"] for copy in logged) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert {(c["variant"], c["model"], c["model_version"]) for c in logged} == {("dark", "pid", 1)}
    assert all(copy["latency_ms"] > 0 for copy in logged), "each copy's lag behind its request"
    assert {copy["request_id"] for copy in logged} == {a.json()["request_id"] for a in answers}
    assert {row["variant"] for row in logged_rows(pid_workspace) if not row["shadow"]} == {"live"}
    # Added up by the shadow's process, added by the worker: lags, rows and predicted values.
    assert f"{LAG}_count{{{DARK}}} 5.0" in metrics
    [under_30s] = [line for line in metrics.splitlines() if line.startswith(f"{LAG}_bucket")
                   and 'variant="dark"' in line and 'le="30.0"' in line]  # fmt: skip
    assert under_30s.endswith(" 5.0")
    assert f"mlcycle_serve_batch_rows_sum{{{DARK}}} 5.0" in metrics
    assert f"mlcycle_serve_prediction_value_count{{{DARK}}} 5.0" in metrics
    assert f"mlcycle_serve_prediction_value_sum{{{DARK}}} {5.0 * child}" in metrics
    assert not running(child), "the shadow's process ends with the server"


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
async def test_every_thread_of_the_shadow_process_runs_only_when_a_core_is_idle(
    pid_workspace: Workspace,
) -> None:
    """Its predict calls and its log's writer and roller threads: all ``SCHED_IDLE``."""
    async with client_for(pid_workspace, PID_SHADOWED) as (client, server):
        await client.post(PREDICT, json={"instances": [{"id": 1.0}]})
        await logged_copies(pid_workspace, 1)
        child = server.routes.shadows[0].queue.pid
        threads = [int(t.name) for t in Path(f"/proc/{child}/task").iterdir()]
        policies = {os.sched_getscheduler(thread) for thread in threads}
    assert len(threads) >= 3, "the process, its log's writer and its roller"
    assert policies == {os.SCHED_IDLE}


async def test_a_killed_shadow_process_is_started_again_and_never_fails_a_request(
    pid_workspace: Workspace,
) -> None:
    """SIGKILL the shadow's process: answers go on, copies are shed, a new process takes over."""
    async with client_for(pid_workspace, PID_SHADOWED) as (client, server):
        shadow = server.routes.shadows[0].queue
        first = shadow.pid
        assert first is not None
        await client.post(PREDICT, json={"instances": [{"id": 1.0}]})
        assert await shadow_rows(pid_workspace, 1) == [float(first)]
        os.kill(first, signal.SIGKILL)
        statuses = []
        for n in range(500):  # requests go on while the process is down and restarted
            answer = await client.post(PREDICT, json={"instances": [{"id": float(n)}]})
            statuses.append(answer.status_code)
            if any(v != first for v in await shadow_rows(pid_workspace, 0)):
                break
            await asyncio.sleep(0.02)
        metrics = (await client.get("/metrics")).text
    second = set(await shadow_rows(pid_workspace, 0)) - {float(first)}
    assert set(statuses) == {200}
    assert len(second) == 1, "a new process predicted the later copies"
    assert second != {float(os.getpid())}
    assert 'mlcycle_serve_shed_total{deployment="bikes",reason="shadow"}' in metrics


async def test_a_copy_the_shadow_fails_on_leaves_the_others_logged(
    pid_workspace: Workspace,
) -> None:
    """Copies predicted together: one breaks the shadow's model, the other two are still logged."""
    deployment = Deployment(
        name="bikes",
        variants=(Variant("live", "echo/1"), Variant("dark", "pid/1", shadow=True)),
        policy="shadow",
    )
    async with client_for(pid_workspace, deployment) as (client, _):
        answers = await asyncio.gather(
            *(client.post(PREDICT, json={"instances": [{"id": n}]}) for n in (1.0, -1.0, 2.0))
        )
        await shadow_rows(pid_workspace, 2)
    logged = shadow_log(pid_workspace)  # the server stopped: its shadow's log is written out
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert sorted(copy["inputs"]["id"] for copy in logged) == [1.0, 2.0]


async def test_stopping_the_server_predicts_every_copy_it_answered_first(
    pid_workspace: Workspace,
) -> None:
    """The shadow's process is stopped (SIGSTOP) while 40 requests are answered, then the server.

    Closing, the shadow waits for the worker's log to hand over every row it
    answered, sends what its process has not read and lets it read to the
    end: all 40 copies are predicted and logged. The shadow's process syncs
    its log and exits; the worker's log, closed last, rolls the segments it
    left into Delta.
    """
    sink = pid_workspace.prediction_log()
    async with client_for(pid_workspace, PID_SHADOWED, sink=sink) as (client, server):
        child = server.routes.shadows[0].queue.pid
        assert child is not None
        os.kill(child, signal.SIGSTOP)
        await asyncio.gather(
            *(client.post(PREDICT, json={"instances": [{"id": float(n)}]}) for n in range(40))
        )
        # Woken once the server is closing: nothing was predicted before.
        asyncio.get_running_loop().call_later(0.5, os.kill, child, signal.SIGCONT)
    assert not running(child), "the shadow's process ended after writing out its log"
    assert list((pid_workspace.settings.workspace_dir / "spool").rglob("*.arrows")) == [], (
        "the worker's log rolled the shadow's segments into Delta when it closed"
    )
    table = DeltaTable(sink.tables.table_uri(log_table_name("bikes"))).to_pyarrow_table()
    assert table.filter(pc.field("shadow")).num_rows == 40
    assert table.filter(~pc.field("shadow")).num_rows == 40


async def test_a_shadow_its_process_cannot_load_stops_the_start_with_the_reason(
    pid_workspace: Workspace, tmp_path: Path
) -> None:
    """The shadow's process opens another project, without that model: the start says so."""
    elsewhere = Settings(home=tmp_path / "elsewhere", actor="ana")
    sink = pid_workspace.prediction_log()
    server = ModelServer(
        registry=pid_workspace.registry,
        deployment=PID_SHADOWED,
        settings=serve_settings(),
        sink=sink,
        registry_opener=functools.partial(open_registry, elsewhere),
    )
    try:
        with pytest.raises(ShadowGone, match=r"cannot serve it: NotFound: .*pid"):
            await server.start()
    finally:
        sink.close()


async def test_a_server_without_a_registry_opener_refuses_a_shadow(
    pid_workspace: Workspace,
) -> None:
    server = ModelServer(
        registry=pid_workspace.registry, deployment=PID_SHADOWED, settings=serve_settings()
    )
    with pytest.raises(MlcycleError, match="registry_opener"):
        await server.start()


@pytest.mark.parametrize("sink", [None, ListSink()], ids=["no sink", "a list"])
async def test_a_server_without_a_prediction_log_refuses_a_shadow(
    pid_workspace: Workspace, sink: ListSink | None
) -> None:
    """A shadow's copies come from the prediction log's writer: no log, no shadow."""
    server = ModelServer(
        registry=pid_workspace.registry,
        deployment=PID_SHADOWED,
        settings=serve_settings(),
        sink=sink,
        registry_opener=functools.partial(open_registry, pid_workspace.settings),
    )
    with pytest.raises(MlcycleError, match=r"prediction log's writer.*workspace.prediction_log"):
        await server.start()


async def test_copies_of_a_replaced_pair_of_variants_reach_the_replaced_shadow(
    tmp_path: Path,
) -> None:
    settings = Settings(
        home=tmp_path,
        actor="ana",
        registry=RegistrySettings(trusted_publishers=("ana",), guarded_aliases=()),
    )
    deployment = Deployment(
        name="bikes",
        policy="shadow",
        variants=(
            Variant("live", "slow@production"),
            Variant("dark", "slow@production", shadow=True),
        ),
    )
    answered: list[str] = []
    with Workspace.open(settings) as workspace:
        example = pd.DataFrame({"id": [1.0, 2.0]})
        for _ in range(2):
            workspace.registry.register("slow", Slow(0.3), input_example=example, flavor="pyfunc")
        workspace.registry.promote("slow", 1, to="production")
        async with client_for(workspace, deployment) as (client, server):
            sending = True

            async def send(first: int) -> None:
                n = first
                while sending:
                    answer = await client.post(PREDICT, json={"instances": [{"id": float(n)}]})
                    assert answer.status_code == 200
                    answered.append(answer.json()["request_id"])
                    n += 1

            senders = [asyncio.create_task(send(k * 10_000)) for k in range(3)]
            await asyncio.sleep(1.0)
            old = server.routes.shadows[0].queue
            # Both variants follow the alias: the answering lane and the shadow retire together.
            await asyncio.to_thread(workspace.registry.promote, "slow", 2, to="production")
            await until(lambda: server.routes.shadows[0].queue is not old)
            await asyncio.sleep(1.0)
            sending = False
            await asyncio.gather(*senders)
            metrics = (await client.get("/metrics")).text
        logged = {copy["request_id"] for copy in shadow_log(workspace)}
    shed = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("mlcycle_serve_shed_total{") and 'reason="shadow"' in line
    ]
    assert sum(shed) == 0  # no copy was shed
    assert [request for request in answered if request not in logged] == []


async def test_a_shadow_logs_each_row_of_a_large_request_under_its_own_index(
    pid_workspace: Workspace,
) -> None:
    """Rows of one request, and the parts of a request larger than a batch, keep their indexes."""
    async with client_for(pid_workspace, PID_SHADOWED, max_batch_size=4) as (client, _):
        answers = [
            await client.post(PREDICT, json={"instances": [{"id": float(n)} for n in range(size)]})
            for size in (1, 3, 10)  # the last goes in parts of 4, 4 and 2 rows
        ]
        await logged_copies(pid_workspace, 14)
    logged = shadow_log(pid_workspace)
    ids = [answer.json()["request_id"] for answer in answers]
    got = sorted((ids.index(copy["request_id"]), copy["row_index"]) for copy in logged)
    assert got == [(0, 0)] + [(1, n) for n in range(3)] + [(2, n) for n in range(10)]
    assert {copy["inputs"]["id"] - copy["row_index"] for copy in logged} == {0.0}
