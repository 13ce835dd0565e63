"""Fixtures for serving: a project with small registered models, a sink, real servers.

``echo`` predicts its ``id`` column exactly (a linear model with an ONNX
copy), so a test can give every request its own id and check that each
answer holds exactly its own rows. ``bike_models`` registers a small Bike
Sharing-like model three times.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
from click.testing import Result
from sklearn.linear_model import LinearRegression, Ridge
from starlette.applications import Starlette
from tests.conftest import free_port
from tests.serve.models import Pid, Slow
from typer.testing import CliRunner

from mlcycle.cli._app import app
from mlcycle.project import init_project
from mlcycle.serve import (
    HttpProtocol,
    LogSchema,
    ModelServer,
    PredictionBatch,
    PredictionSink,
    create_app,
    implicit_deployment,
    read_predictions,
    spool_dir,
)
from mlcycle.settings import RegistrySettings, ServeSettings, Settings
from mlcycle.store import Deployment, TableArea, Variant
from mlcycle.workspace import Workspace, open_prediction_log, open_registry

ECHO_COLUMNS = ["id", "x"]
Invoke = Callable[..., Result]


def failed_request(deployment: str, request_id: str) -> PredictionBatch:
    """The log's batch of one request refused before any variant answered (a 422)."""
    return PredictionBatch(
        deployment=deployment,
        model="",
        model_version=0,
        variant="",
        shadow=False,
        request_ids=[request_id],
        row_indexes=[0],
        times=[1.9e9],
        latency_ms=[1.0],
        inputs={},
        outputs=[],
        error="422: no rows",
    )


@dataclass
class ListSink:
    """A prediction sink that keeps every batch in a list (the real log is serve-store's)."""

    batches: list[PredictionBatch] = field(default_factory=list)
    closed: bool = False

    def append(self, batch: PredictionBatch) -> None:
        self.batches.append(batch)

    def flush(self) -> None:
        """Nothing to wait for: every batch is in the list."""

    def close(self) -> None:
        self.closed = True

    def logged_schema(self, deployment: str) -> LogSchema:
        """A list keeps outputs and features of any kind."""
        del deployment
        return LogSchema()


def echo_model(offset: float = 0.0) -> tuple[LinearRegression, pd.DataFrame]:
    """A model predicting ``id + offset`` exactly, and its input example."""
    frame = pd.DataFrame({"id": np.arange(20, dtype=np.float64), "x": np.linspace(0, 1, 20)})
    model = LinearRegression().fit(frame, frame["id"] + offset)
    model.coef_ = np.array([1.0, 0.0])
    model.intercept_ = np.float64(offset)
    return model, frame


@pytest.fixture
def workspace(project: Path) -> Iterator[Workspace]:
    """The project's workspace; no alias is guarded, so tests promote freely."""
    settings = Settings(home=project, actor="ana", registry=RegistrySettings(guarded_aliases=()))
    with Workspace.open(settings) as opened:
        yield opened


@pytest.fixture
def echo(workspace: Workspace) -> str:
    """``echo`` version 1 (id), version 2 (id + 1000), alias production -> 1."""
    for offset in (0.0, 1000.0):
        model, frame = echo_model(offset)
        workspace.registry.register("echo", model, input_example=frame)
    workspace.registry.promote("echo", 1, to="production")
    return "models:/echo@production"


PID_SHADOWED = Deployment(
    name="bikes",
    variants=(Variant("live", "pid/1"), Variant("dark", "pid/1", shadow=True)),
    policy="shadow",
)
"""``pid`` 1 answering, and shadowing itself in the shadow's own process."""


@pytest.fixture
def pid_workspace(tmp_path: Path) -> Iterator[Workspace]:
    """``pid`` 1 answers the id of the process it runs in (it raises on a negative ``id``);
    ``echo`` 1 answers column ``id``."""
    settings = Settings(
        home=tmp_path, actor="ana", registry=RegistrySettings(trusted_publishers=("ana",))
    )
    with Workspace.open(settings) as workspace:
        example = pd.DataFrame({"id": [1.0, 2.0]})
        workspace.registry.register("pid", Pid(), input_example=example, flavor="pyfunc")
        workspace.registry.register("echo", Slow(0.0), input_example=example, flavor="pyfunc")
        yield workspace


def serve_settings(**changes: object) -> ServeSettings:
    """Server settings for tests: following the log quickly."""
    return ServeSettings(poll_interval_s=0.1, **changes)  # type: ignore[arg-type]


@asynccontextmanager
async def client_for(
    workspace: Workspace,
    deployment: Deployment | str,
    *,
    sink: PredictionSink | None = None,
    token: str | None = None,
    **changes: object,
) -> AsyncIterator[tuple[httpx.AsyncClient, ModelServer]]:
    """An in-process client of a started server (the ASGI app, no socket).

    A deployment with a shadow variant gets the project's prediction log when
    no sink is given: its shadows take their copies from the log's writer.
    """
    if isinstance(deployment, str):
        deployment = implicit_deployment(deployment)
    sink = sink or shadows_log(workspace, deployment)
    server = ModelServer(
        registry=workspace.registry,
        registry_opener=functools.partial(open_registry, workspace.settings),
        sink_opener=functools.partial(open_prediction_log, workspace.settings),
        deployment=deployment,
        settings=serve_settings(**changes),
        sink=sink,
        events=workspace.metadata,
    )
    app = create_app(server, token=token)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, server


@dataclass
class LiveServer:
    """A real uvicorn server on a loopback port, in a thread of the test process."""

    url: str
    server: ModelServer


def run_live(app: Starlette, server: ModelServer) -> Iterator[LiveServer]:
    """Serve ``app`` with uvicorn (uvloop, our httptools protocol) until the generator is closed."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http=HttpProtocol,
        log_level="warning",
        access_log=False,
    )
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not runner.started:
        assert thread.is_alive(), "the server thread died while starting"
        assert time.monotonic() < deadline, "the server did not start in 60 s"
        time.sleep(0.02)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", server=server)
    finally:
        runner.should_exit = True
        thread.join(timeout=30)


def live_server(
    workspace: Workspace,
    deployment: Deployment | str,
    *,
    sink: PredictionSink | None = None,
    **changes: object,
) -> Iterator[LiveServer]:
    """A live server for ``deployment`` on ``workspace`` (see ``run_live``, ``client_for``)."""
    if isinstance(deployment, str):
        deployment = implicit_deployment(deployment)
    server = ModelServer(
        registry=workspace.registry,
        registry_opener=functools.partial(open_registry, workspace.settings),
        sink_opener=functools.partial(open_prediction_log, workspace.settings),
        deployment=deployment,
        settings=serve_settings(**changes),
        sink=sink or shadows_log(workspace, deployment),
        events=workspace.metadata,
    )
    yield from run_live(create_app(server), server)


def shadows_log(workspace: Workspace, deployment: Deployment) -> PredictionSink | None:
    """The project's prediction log for a deployment with a shadow variant, else ``None``."""
    if any(variant.shadow for variant in deployment.variants):
        return workspace.prediction_log()
    return None


def logged_rows(workspace: Workspace, deployment: str = "bikes") -> list[dict[str, Any]]:
    """Every answered row in the project's prediction log, as rows (``inputs`` a dict).

    Segments (written every 0.2 s) are read while their processes run, the
    Delta table once they have rolled over.
    """
    table = read_predictions(
        spool_dir=spool_dir(workspace.settings),
        tables=cast("TableArea", workspace.artifacts),
        deployment=deployment,
    )
    return table.to_pylist()


def shadow_log(workspace: Workspace, deployment: str = "bikes") -> list[dict[str, Any]]:
    """The shadow copies in the project's prediction log (a shadow's own process logs them)."""
    return [row for row in logged_rows(workspace, deployment) if row["shadow"]]


async def logged_copies(
    workspace: Workspace, count: int, deployment: str = "bikes"
) -> list[dict[str, Any]]:
    """The shadow copies logged, once there are ``count`` of them (10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        copies = await asyncio.to_thread(shadow_log, workspace, deployment)
        if len(copies) >= count or time.monotonic() > deadline:
            return copies
        await asyncio.sleep(0.05)


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (at most 10 s)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


def rows(*ids: float) -> list[dict[str, float]]:
    """v1 instances of the echo model, one per id."""
    return [{"id": float(i), "x": 0.5} for i in ids]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MLCYCLE_* variable from the outside changes what a test sees."""
    for name in list(os.environ):
        if name.startswith("MLCYCLE_") and name != "MLCYCLE_REQUIRE_SERVICES":
            monkeypatch.delenv(name)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project, and the working directory set to it."""
    root = init_project(tmp_path / "project")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def hours() -> pd.DataFrame:
    """Rows shaped like Bike Sharing's hourly data (a few columns of it) with the count."""
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "station": rng.integers(1, 4, 60),
            "hr": rng.integers(0, 24, 60),
            "temp": rng.uniform(0, 1, 60),
        }
    )
    frame["cnt"] = 40 * frame["temp"] + 3 * frame["hr"] + frame["station"]
    return frame


@pytest.fixture
def bike_models(workspace: Workspace, hours: pd.DataFrame) -> Workspace:
    """``bike-demand`` versions 1 to 3 (Ridge of growing alpha); production names version 1."""
    features = hours[["station", "hr", "temp"]]
    for alpha in (0.1, 1.0, 10.0):
        model = Ridge(alpha=alpha).fit(features, hours["cnt"])
        workspace.registry.register("bike-demand", model, input_example=features.head(5))
    workspace.registry.promote("bike-demand", 1, "production", force=True, reason="tests")
    return workspace


@pytest.fixture
def invoke() -> Invoke:
    """Run ``mlcycle`` in-process; our own errors come back as exit codes, others raise."""
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args), catch_exceptions=False, prog_name="mlcycle")

    return run
