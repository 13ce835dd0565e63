"""Fixtures for the server: a workspace with small registered models, a sink, real servers.

``echo`` predicts its ``id`` column exactly (a linear model with an ONNX
copy), so a test can give every request its own id and check that each
answer holds exactly its own rows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
from sklearn.linear_model import LinearRegression
from starlette.applications import Starlette
from tests.conftest import free_port

from mlcycle.serve import ModelServer, PredictionBatch, create_app, implicit_deployment
from mlcycle.settings import RegistrySettings, ServeSettings, Settings
from mlcycle.store import Deployment
from mlcycle.workspace import Workspace

ECHO_COLUMNS = ["id", "x"]


@dataclass
class ListSink:
    """A prediction sink that keeps every batch in a list (the real log is serve-store's)."""

    batches: list[PredictionBatch] = field(default_factory=list)
    closed: bool = False

    def append(self, batch: PredictionBatch) -> None:
        self.batches.append(batch)

    def close(self) -> None:
        self.closed = True


def echo_model(offset: float = 0.0) -> tuple[LinearRegression, pd.DataFrame]:
    """A model predicting ``id + offset`` exactly, and its input example."""
    frame = pd.DataFrame({"id": np.arange(20, dtype=np.float64), "x": np.linspace(0, 1, 20)})
    model = LinearRegression().fit(frame, frame["id"] + offset)
    model.coef_ = np.array([1.0, 0.0])
    model.intercept_ = np.float64(offset)
    return model, frame


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    settings = Settings(home=tmp_path, actor="ana", registry=RegistrySettings(guarded_aliases=()))
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


def serve_settings(**changes: object) -> ServeSettings:
    """Server settings for tests: following the log quickly."""
    return ServeSettings(poll_interval_s=0.1, **changes)  # type: ignore[arg-type]


@asynccontextmanager
async def client_for(
    workspace: Workspace,
    deployment: Deployment | str,
    *,
    sink: ListSink | None = None,
    token: str | None = None,
    **changes: object,
) -> AsyncIterator[tuple[httpx.AsyncClient, ModelServer]]:
    """An in-process client of a started server (the ASGI app, no socket)."""
    if isinstance(deployment, str):
        deployment = implicit_deployment(deployment)
    server = ModelServer(
        registry=workspace.registry,
        deployment=deployment,
        settings=serve_settings(**changes),
        sink=sink,
        events=workspace.metadata,
    )
    app = create_app(server, token=token)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, server


@dataclass
class LiveServer:
    """A real uvicorn server on a loopback port, in a thread of the test process."""

    url: str
    server: ModelServer


def run_live(app: Starlette, server: ModelServer) -> Iterator[LiveServer]:
    """Serve ``app`` with uvicorn (uvloop, httptools) until the generator is closed."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
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
    sink: ListSink | None = None,
    **changes: object,
) -> Iterator[LiveServer]:
    """A live server for ``deployment`` on ``workspace`` (see ``run_live``)."""
    if isinstance(deployment, str):
        deployment = implicit_deployment(deployment)
    server = ModelServer(
        registry=workspace.registry,
        deployment=deployment,
        settings=serve_settings(**changes),
        sink=sink,
        events=workspace.metadata,
    )
    yield from run_live(create_app(server), server)


def rows(*ids: float) -> list[dict[str, float]]:
    """v1 instances of the echo model, one per id."""
    return [{"id": float(i), "x": 0.5} for i in ids]
