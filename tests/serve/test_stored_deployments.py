"""A server of a stored deployment follows its changes, its removal and its return."""

from __future__ import annotations

import asyncio
import functools
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import httpx
import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from tests.serve.conftest import logged_copies, logged_rows, rows, serve_settings, shadow_log
from tests.serve.test_server_log import running

from mlcycle.errors import MlcycleError, ValidationFailed
from mlcycle.serve import ModelServer, PredictionSink, create_app, read_predictions, spool_dir
from mlcycle.serve._predlog import FAILED_SUFFIX
from mlcycle.serve._rows import Rows, Schema
from mlcycle.store import Deployment, DeploymentCatalog, LocalArtifactStore, Variant
from mlcycle.store._artifacts import blob_key, check_digest
from mlcycle.workspace import Workspace, open_prediction_log, open_registry

pytestmark = pytest.mark.anyio
PREDICT = "/v1/models/bikes:predict"


@asynccontextmanager
async def following(
    workspace: Workspace, sink: PredictionSink
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
    async with following(workspace, workspace.prediction_log()) as (client, server):
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
    answered = {(row["variant"], row["model_version"]) for row in logged_rows(workspace)
                if not row["shadow"]}  # fmt: skip
    assert answered == {("primary", 1), ("canary", 2), ("primary", 2)}, "the shadow logs copies"
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
    async with following(workspace, workspace.prediction_log()) as (client, server):
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


def hide_blobs(workspace: Workspace, ref: str, *, keeping: str) -> list[tuple[Path, Path]]:
    """Move the stored files of model version ``ref`` away (those ``keeping`` does not share)."""
    kept = set(workspace.registry.get(keeping).files.values())
    moved = []
    for digest in set(workspace.registry.get(ref).files.values()) - kept:
        path = cast("LocalArtifactStore", workspace.artifacts).root / blob_key(check_digest(digest))
        away = path.with_name(path.name + ".away")
        path.rename(away)
        moved.append((away, path))
    return moved


def server_of(
    workspace: Workspace, deployment: Deployment, *, sink: PredictionSink | None = None
) -> ModelServer:
    """A server of the stored ``deployment``, following the store, its shadows logging."""
    return ModelServer(
        registry=workspace.registry,
        registry_opener=functools.partial(open_registry, workspace.settings),
        sink_opener=functools.partial(open_prediction_log, workspace.settings),
        deployment=deployment,
        settings=serve_settings(),
        sink=sink,
        events=workspace.metadata,
        deployments=cast("DeploymentCatalog", workspace.metadata),
    )


def serving(server: ModelServer, *, version: int) -> Callable[[], Awaitable[bool]]:
    """A check for ``until``: the server's first answering lane serves ``version``."""

    async def check() -> bool:
        return server.routes.answering[0].model.version == version

    return check


async def test_a_change_whose_model_would_not_load_is_served_once_it_loads(
    workspace: Workspace, echo: str, caplog: pytest.LogCaptureFixture
) -> None:
    del echo
    workspace.deployments.deploy("bikes", model="echo@production")
    server = server_of(workspace, workspace.metadata.get_deployment("bikes"))
    await server.start()
    try:
        moved = hide_blobs(workspace, "echo/2", keeping="echo/1")  # the store out of reach
        await asyncio.to_thread(workspace.registry.promote, "echo", 2, to="production")

        async def failed() -> bool:
            return "following the event log failed" in caplog.text

        await until(failed)
        for away, path in moved:
            away.rename(path)  # back: the next try loads it

        await until(serving(server, version=2))
    finally:
        await server.stop()


def register_words(workspace: Workspace) -> None:
    """``echo`` version 3: a classifier predicting one string a row."""
    frame = pd.DataFrame({"id": np.arange(20.0), "x": np.linspace(0, 1, 20)})
    words = LogisticRegression().fit(frame, np.where(frame["id"] > 9, "high", "low"))
    workspace.registry.register("echo", words, input_example=frame)


async def test_an_alias_moved_to_a_model_of_another_output_kind_is_not_served(
    workspace: Workspace, echo: str, caplog: pytest.LogCaptureFixture
) -> None:
    del echo
    register_words(workspace)
    workspace.registry.promote("echo", 2, to="candidate")
    workspace.deployments.deploy("bikes", model="echo/1", canary={"echo@candidate": 50})
    server = server_of(workspace, workspace.metadata.get_deployment("bikes"))
    await server.start()
    try:
        await asyncio.to_thread(workspace.registry.promote, "echo", 3, to="candidate")

        async def refused() -> bool:
            return "predict different kinds of output" in caplog.text

        await until(refused)
        served = [lane.model.ref for lane in server.routes.lanes]
    finally:
        await server.stop()
    assert served == ["echo/1", "echo/2"], "the variants served before the move"
    assert "canary (echo/3): one string a row" in caplog.text


async def test_a_single_variant_moved_to_another_output_kind_than_its_log_is_not_served(
    workspace: Workspace, echo: str, caplog: pytest.LogCaptureFixture
) -> None:
    del echo
    register_words(workspace)
    workspace.deployments.deploy("bikes", model="echo@production")
    log = workspace.prediction_log()
    try:
        async with following(workspace, log) as (client, _):
            answer = await client.post(PREDICT, json={"instances": rows(1, 2)})
            assert answer.status_code == 200, answer.text
            await asyncio.to_thread(workspace.registry.promote, "echo", 3, to="production")

            async def refused() -> bool:
                return "predicts one string a row, but the deployment's prediction log" in (
                    caplog.text
                )

            await until(refused)
            after = await client.post(PREDICT, json={"instances": rows(3)})
            loads = [
                line
                for line in (await client.get("/metrics")).text.splitlines()
                if line.startswith("mlcycle_serve_model_loads_total")
            ]
        assert after.json()["version"] == 1, "the version served before the move"
        assert loads, "the metric is there"
        assert not [line for line in loads if 'version="3"' in line], "refused before it loads"
        # A server started afresh refuses too, naming both kinds and the fix.
        again = server_of(workspace, workspace.metadata.get_deployment("bikes"), sink=log)
        with pytest.raises(
            ValidationFailed,
            match=r"variant primary \(echo/3\) predicts one string a row, but the "
            r"deployment's prediction log holds one number a row .* serve that model as a "
            r"deployment of another name",
        ):
            await again.start()
    finally:
        log.close()
    assert not list(spool_dir(workspace.settings).rglob(f"*{FAILED_SUFFIX}"))
    logged = read_predictions(
        spool_dir=spool_dir(workspace.settings), tables=workspace.artifacts, deployment="bikes"
    )
    assert logged.column("output").to_pylist() == [1.0, 2.0, 3.0]


def register_worded_x(workspace: Workspace) -> None:
    """``echo`` version 3: predicting numbers, but taking its feature ``x`` as a string."""
    frame = pd.DataFrame({"id": np.arange(20.0), "x": ["low", "high"] * 10})
    encode = ColumnTransformer([("x", OneHotEncoder(), ["x"])], remainder="passthrough")
    model = Pipeline([("encode", encode), ("fit", LinearRegression())]).fit(frame, frame["id"])
    workspace.registry.register("echo", model, input_example=frame)


async def test_a_single_variant_moved_to_another_feature_kind_than_its_log_is_not_served(
    workspace: Workspace, echo: str, caplog: pytest.LogCaptureFixture
) -> None:
    del echo
    register_worded_x(workspace)
    workspace.deployments.deploy("bikes", model="echo@production")
    log = workspace.prediction_log()
    expected = (
        r"variant primary \(echo/3\) takes feature 'x' as a string, but the deployment's "
        r"prediction log holds it as a number .* serve that model as a deployment of another "
        r"name, or move the alias back to a model taking 'x' as a number"
    )
    try:
        async with following(workspace, log) as (client, _):
            answer = await client.post(PREDICT, json={"instances": rows(1, 2)})
            assert answer.status_code == 200, answer.text
            await asyncio.to_thread(workspace.registry.promote, "echo", 3, to="production")

            async def refused() -> bool:
                return "takes feature 'x' as a string" in caplog.text

            await until(refused)
            after = await client.post(PREDICT, json={"instances": rows(3)})
        assert after.json()["version"] == 1, "the version served before the move"
        assert re.search(expected, caplog.text)
        # A server started afresh refuses too.
        again = server_of(workspace, workspace.metadata.get_deployment("bikes"), sink=log)
        with pytest.raises(ValidationFailed, match=expected):
            await again.start()
    finally:
        log.close()
    assert not list(spool_dir(workspace.settings).rglob(f"*{FAILED_SUFFIX}"))
    logged = read_predictions(
        spool_dir=spool_dir(workspace.settings), tables=workspace.artifacts, deployment="bikes"
    )
    assert logged.column("inputs").combine_chunks().field("x").type == pa.float64()
    assert logged.column("output").to_pylist() == [1.0, 2.0, 3.0]


async def test_a_change_that_fails_to_load_closes_the_shadow_it_started(
    workspace: Workspace, echo: str
) -> None:
    del echo
    workspace.deployments.deploy("bikes", model="echo/1")
    server = server_of(workspace, workspace.metadata.get_deployment("bikes"))
    await server.start()
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    try:
        hide_blobs(workspace, "echo/2", keeping="echo/1")
        workspace.deployments.apply(
            Deployment(
                name="bikes",
                policy="shadow",
                variants=(Variant("dark", "echo/1", shadow=True), Variant("live", "echo/2")),
            )
        )
        with pytest.raises((MlcycleError, OSError)):
            await server.refresh()  # the shadow's process starts; then echo/2 fails to load
        started = [c.pid for c in psutil.Process().children(recursive=True) if c.pid not in before]
        served = [lane.model.ref for lane in server.routes.lanes]
    finally:
        await server.stop()
    assert served == ["echo/1"]  # the change did not happen
    assert not [pid for pid in started if running(pid)], "the started shadow still runs"


async def test_a_change_made_while_the_server_starts_is_served(
    workspace: Workspace, echo: str
) -> None:
    del echo
    workspace.deployments.deploy("bikes", model="echo/1")
    server = server_of(workspace, workspace.metadata.get_deployment("bikes"))  # read, then...
    workspace.deployments.deploy("bikes", model="echo/2")  # ... changed before the server starts
    await server.start()
    try:
        await until(serving(server, version=2))
    finally:
        await server.stop()


async def test_a_weight_change_keeps_the_shadow_copies_of_requests_in_flight(
    workspace: Workspace, echo: str
) -> None:
    del echo
    frame = pd.DataFrame({"x": np.linspace(0, 1, 20), "id": np.arange(20.0)})  # other order
    model = LinearRegression().fit(frame, frame["id"])
    workspace.registry.register("reordered", model, input_example=frame.head(5))

    def split(stable: int) -> Deployment:
        return Deployment(
            name="bikes",
            policy="canary",
            variants=(
                Variant("stable", "echo/1", weight=stable),
                Variant("candidate", "echo/2", weight=100 - stable),
                Variant("dark", "reordered/1", shadow=True),  # reads its inputs by name
            ),
        )

    workspace.deployments.apply(split(90))
    server = server_of(workspace, split(90), sink=workspace.prediction_log())
    await server.start()
    try:

        def decode(schema: Schema) -> Rows:
            return schema.from_records(rows(3))

        server.admit()
        lane, job = server.queue(decode, key=None, request_id="r1", arrived=time.perf_counter())
        workspace.deployments.apply(split(80))  # the same versions, other weights
        await server.refresh()
        assert all(kept is not lane for kept in server.routes.answering)
        await server.answer(lane, job)
        server.release(arrived=False)
        copies = await logged_copies(workspace, 1)
    finally:
        await server.stop()
    assert [copy["request_id"] for copy in copies] == ["r1"]
