"""A server of a stored deployment follows its changes, its removal and its return."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import cast

import httpx
import pytest
from tests.serve.conftest import ListSink, rows, serve_settings, shadow_log
from tests.serve.test_server_log import running

from mlcycle.serve import ModelServer, create_app
from mlcycle.store import DeploymentCatalog
from mlcycle.workspace import Workspace, open_prediction_log, open_registry

pytestmark = pytest.mark.anyio
PREDICT = "/v1/models/bikes:predict"


@asynccontextmanager
async def following(
    workspace: Workspace, sink: ListSink
) -> AsyncIterator[tuple[httpx.AsyncClient, ModelServer]]:
    """A started server of the stored deployment ``bikes``, following the store like a worker."""
    catalog = cast("DeploymentCatalog", workspace.metadata)
    server = ModelServer(
        registry=workspace.registry,
        registry_opener=functools.partial(open_registry, workspace.settings),
        sink_opener=functools.partial(open_prediction_log, workspace.settings),
        deployment=catalog.get_deployment("bikes"),
        settings=serve_settings(),
        sink=sink,
        events=workspace.metadata,
        deployments=catalog,
    )
    app = create_app(server)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, server


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait for ``check`` to hold; a guard against hanging (the server polls every 0.1 s)."""
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the server did not follow the store in 10 s")


async def test_a_change_a_removal_and_a_return_are_followed(
    workspace: Workspace, echo: str
) -> None:
    del echo
    workspace.deployments.deploy("bikes", model="echo@production", canary={"echo/2": 10})
    sink = ListSink()
    async with following(workspace, sink) as (client, server):
        split = [await client.post(PREDICT, json={"instances": rows(n)}) for n in range(80)]

        workspace.deployments.deploy("bikes", model="echo/2", shadow=["echo@production"])

        async def primary_is_version_2() -> bool:
            body = (await client.post(PREDICT, json={"instances": rows(3)})).json()
            return bool(body["version"] == 2 and body["variant"] == "primary")

        await until(primary_is_version_2)
        shadowed = await client.post(PREDICT, json={"instances": rows(4)})

        async def copied() -> bool:
            copies = await asyncio.to_thread(shadow_log, workspace)
            return any(copy["inputs"]["id"] == 4.0 for copy in copies)

        await until(copied)

        workspace.deployments.remove("bikes")

        async def refused() -> bool:
            return (await client.post(PREDICT, json={"instances": rows(5)})).status_code == 404

        await until(refused)
        gone = await client.post(PREDICT, json={"instances": rows(5)})
        gone_ready = await client.get("/v2/health/ready")
        gone_meta = await client.get("/v2/models/bikes")
        live = await client.get("/v2/health/live")

        workspace.deployments.deploy("bikes", model="echo/1")

        async def serving_again() -> bool:
            return (await client.post(PREDICT, json={"instances": rows(6)})).status_code == 200

        await until(serving_again)
        back = await client.post(PREDICT, json={"instances": rows(6)})
        ready = await client.get("/v2/health/ready")
        deployment = server.deployment
    assert {answer.status_code for answer in split} == {200}
    assert {answer.json()["variant"] for answer in split} == {"primary", "canary"}
    assert shadowed.json()["variant"] == "primary"
    assert round(shadowed.json()["predictions"][0]) == 1004
    [copy] = [copy for copy in shadow_log(workspace) if copy["inputs"]["id"] == 4.0]
    assert (copy["variant"], copy["model_version"], round(copy["output"])) == ("shadow", 1, 4)
    assert not any(batch.shadow for batch in sink.batches), "the shadow's process logs copies"
    assert gone.json()["error"].startswith("deployment 'bikes' was removed from the store")
    assert "mlcycle deploy bikes" in gone.json()["error"]
    assert gone_ready.status_code == 503
    assert gone_meta.status_code == 404
    assert live.status_code == 200
    assert back.json()["version"] == 1
    assert round(back.json()["predictions"][0]) == 6
    assert ready.status_code == 200
    assert [v.model for v in deployment.variants] == ["echo/1"]


async def test_a_hung_shadow_process_holds_up_neither_the_next_change_nor_the_stop(
    workspace: Workspace, echo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shadow is dropped while its process is stopped (SIGSTOP) with a copy to predict.

    The alias moved right after is served at once, and the server's stop
    ends: the process is killed after ``_EXIT_S``, its copy lost.
    """
    del echo
    # Twice this (the copy, then the exit) is longer than ``until`` waits for the alias move.
    monkeypatch.setattr("mlcycle.serve._shadow._EXIT_S", 6.0)
    workspace.deployments.deploy("bikes", model="echo@production", shadow=["echo/2"])
    async with following(workspace, ListSink()) as (client, server):
        child = server.routes.shadows[0].queue.pid
        assert child is not None
        os.kill(child, signal.SIGSTOP)
        await client.post(PREDICT, json={"instances": rows(1)})  # its copy waits for the process
        workspace.deployments.deploy("bikes", model="echo@production")

        async def unshadowed() -> bool:
            return not server.routes.shadows

        await until(unshadowed)
        workspace.registry.promote("echo", 2, to="production")

        async def moved() -> bool:
            body = (await client.post(PREDICT, json={"instances": rows(2)})).json()
            return bool(body["version"] == 2)

        await until(moved)
        hung = running(child)
    assert hung, "the process was still stopped when the alias moved"
    assert not running(child), "the server's stop killed it"
