"""A shadow variant predicts in a process of its own: isolated, restarted, drained on stop."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
from tests.serve.conftest import ListSink, client_for, serve_settings
from tests.serve.models import Pid, Slow
from tests.serve.test_server_log import running

from mlcycle.errors import MlcycleError
from mlcycle.serve import ModelServer
from mlcycle.serve._batching import Job
from mlcycle.serve._model import load_model
from mlcycle.serve._shadow import ShadowGone, ShadowProcess
from mlcycle.settings import RegistrySettings, Settings
from mlcycle.store import Deployment, Variant
from mlcycle.workspace import Workspace, open_registry

pytestmark = pytest.mark.anyio
PREDICT = "/v1/models/bikes:predict"
SHADOWED = Deployment(
    name="bikes",
    variants=(Variant("live", "pid/1"), Variant("dark", "pid/1", shadow=True)),
    policy="shadow",
)


@pytest.fixture
def pid_workspace(tmp_path: Path) -> Workspace:
    """``pid`` 1 answers the id of the process it runs in; ``echo`` 1 answers column ``id``."""
    settings = Settings(
        home=tmp_path, actor="ana", registry=RegistrySettings(trusted_publishers=("ana",))
    )
    with Workspace.open(settings) as workspace:
        example = pd.DataFrame({"id": [1.0, 2.0]})
        workspace.registry.register("pid", Pid(), input_example=example, flavor="pyfunc")
        workspace.registry.register("echo", Slow(0.0), input_example=example, flavor="pyfunc")
        yield workspace


async def shadow_rows(sink: ListSink, count: int) -> list[float]:
    """The shadow's logged outputs, once ``count`` copies are logged (10 s at most)."""
    for _ in range(1000):
        outputs = [float(v) for b in sink.batches if b.shadow for v in b.outputs]
        if len(outputs) >= count:
            return outputs
        await asyncio.sleep(0.01)
    return [float(v) for b in sink.batches if b.shadow for v in b.outputs]


async def test_the_shadow_predicts_in_a_process_of_its_own(pid_workspace: Workspace) -> None:
    """The same model answers from the server's process and shadows from another one."""
    sink = ListSink()
    async with client_for(pid_workspace, SHADOWED, sink=sink) as (client, server):
        child = server.routes.shadows[0].queue.pid
        answers = [
            await client.post(PREDICT, json={"instances": [{"id": float(n)}]}) for n in range(5)
        ]
        logged = await shadow_rows(sink, 5)
        metrics = (await client.get("/metrics")).text
    assert child is not None
    assert child != os.getpid()
    assert {a.json()["predictions"][0] for a in answers} == {os.getpid()}
    assert logged == [float(child)] * 5
    assert 'mlcycle_serve_shadow_lag_seconds_count{deployment="bikes",model="pid"' in metrics
    assert not running(child), "the shadow's process ends with the server"


async def test_a_killed_shadow_process_is_started_again_and_never_fails_a_request(
    pid_workspace: Workspace,
) -> None:
    """SIGKILL the shadow's process: answers go on, copies are shed, a new process takes over."""
    sink = ListSink()
    async with client_for(pid_workspace, SHADOWED, sink=sink) as (client, server):
        shadow = server.routes.shadows[0].queue
        first = shadow.pid
        assert first is not None
        await client.post(PREDICT, json={"instances": [{"id": 1.0}]})
        assert await shadow_rows(sink, 1) == [float(first)]
        os.kill(first, signal.SIGKILL)
        statuses = []
        for n in range(1000):  # requests go on while the process is down and restarted
            answer = await client.post(PREDICT, json={"instances": [{"id": float(n)}]})
            statuses.append(answer.status_code)
            if any(v != first for b in sink.batches if b.shadow for v in b.outputs):
                break
            await asyncio.sleep(0.02)
        metrics = (await client.get("/metrics")).text
    second = {float(v) for b in sink.batches if b.shadow for v in b.outputs} - {float(first)}
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
    sink = ListSink()
    async with client_for(pid_workspace, deployment, sink=sink) as (client, _):
        answers = await asyncio.gather(
            *(client.post(PREDICT, json={"instances": [{"id": n}]}) for n in (1.0, -1.0, 2.0))
        )
        logged = await shadow_rows(sink, 2)
        await asyncio.sleep(0.05)  # time enough for a wrongly logged third copy
    assert [a.status_code for a in answers] == [200, 200, 200]
    shadowed = [(b.request_ids, list(b.inputs["id"])) for b in sink.batches if b.shadow]
    assert sorted(i for _, ids in shadowed for i in ids) == [1.0, 2.0]
    assert len(logged) == 2


async def test_stopping_the_server_predicts_every_queued_copy_first(
    pid_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copies still queued when the server stops are predicted and logged before it ends."""
    monkeypatch.setattr("mlcycle.serve._shadow._FLUSH_S", 60.0)  # one message, the first
    monkeypatch.setattr("mlcycle.serve._shadow._IDLE_S", 60.0)  # its answer is read on close
    sink = ListSink()
    async with client_for(pid_workspace, SHADOWED, sink=sink) as (client, server):
        await asyncio.gather(
            *(client.post(PREDICT, json={"instances": [{"id": float(n)}]}) for n in range(40))
        )
        busy = server.routes.shadows[0].queue.busy
    assert busy, "copies were still waiting or being predicted when the server stopped"
    assert len([v for b in sink.batches if b.shadow for v in b.outputs]) == 40
    assert sink.closed


async def test_a_shadow_its_process_cannot_load_stops_the_start_with_the_reason(
    pid_workspace: Workspace, tmp_path: Path
) -> None:
    """The shadow's process opens another project, without that model: the start says so."""
    elsewhere = Settings(home=tmp_path / "elsewhere", actor="ana")
    server = ModelServer(
        registry=pid_workspace.registry,
        deployment=SHADOWED,
        settings=serve_settings(),
        registry_opener=functools.partial(open_registry, elsewhere),
    )
    with pytest.raises(ShadowGone, match=r"cannot serve it: NotFound: .*pid"):
        await server.start()


async def test_a_server_without_a_registry_opener_refuses_a_shadow(
    pid_workspace: Workspace,
) -> None:
    server = ModelServer(
        registry=pid_workspace.registry, deployment=SHADOWED, settings=serve_settings()
    )
    with pytest.raises(MlcycleError, match="registry_opener"):
        await server.start()


async def test_copies_go_to_the_process_only_in_an_idle_moment(
    pid_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While requests are in flight the copies wait; the first offer in an idle moment sends all."""
    monkeypatch.setattr("mlcycle.serve._shadow._FLUSH_S", 0.0)
    monkeypatch.setattr("mlcycle.serve._shadow._IDLE_S", 60.0)  # no timer sends them meanwhile
    model = load_model(pid_workspace.registry, "pid/1", max_rows=100)
    predicted: list[str] = []
    busy = True
    shadow = ShadowProcess(
        model,
        opener=functools.partial(open_registry, pid_workspace.settings),
        max_rows=100,
        max_queue=100,
        done=lambda copies, _outputs, _now: predicted.extend(copies.request_ids),
        idle=lambda: not busy,
    )

    def offer(*ids: int) -> bool:
        jobs = [
            Job(
                rows=model.schema.from_records([{"id": float(n)}]),
                request_id=f"r{n}",
                arrived=0.0,
                time=0.0,
            )
            for n in ids
        ]
        return shadow.offer(jobs, model.schema.from_records([{"id": float(n)} for n in ids]))

    await shadow.start()
    try:
        assert offer(0, 1)
        assert offer(2)
        assert offer(3, 4)
        await asyncio.sleep(0.2)  # the process would have answered by now, had it been sent
        assert shadow.queued == 5
        assert predicted == []
        busy = False
        assert offer(5)
        assert shadow.queued == 6, "the exchange waits until the answers of the moment are out"
        await asyncio.sleep(0)
        assert shadow.queued == 0, "the loop found an idle moment and sent all six"
        for _ in range(500):
            if predicted:
                break
            await asyncio.sleep(0.01)
            offer(99)
    finally:
        await shadow.close()
    assert predicted[:6] == [f"r{n}" for n in range(6)]
