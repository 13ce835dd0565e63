"""A workspace per test, the folder where test steps count their executions, and executors.

``executor`` runs a test once per executor: ``local``, ``process:2`` and a
real Dask ``LocalCluster`` with 2 worker processes (one per session), so the
tests that take it show that the same pipeline gives the same results and
records on all three.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlcycle.project import init_project
from mlcycle.settings import Settings
from mlcycle.workspace import Workspace

EXECUTORS = ["local", "process:2", "dask"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh project."""
    return init_project(tmp_path / "project")


@pytest.fixture
def workspace(home: Path) -> Iterator[Workspace]:
    """The project's workspace."""
    with Workspace.open(Settings(home=home, actor="tester")) as opened:
        yield opened


@pytest.fixture
def marks(tmp_path: Path) -> str:
    """A folder the test steps count their executions in."""
    folder = tmp_path / "marks"
    folder.mkdir()
    return str(folder)


@pytest.fixture(scope="session")
def dask_scheduler() -> Iterator[str]:
    """A real ``distributed.LocalCluster`` with 2 worker processes, as a ``dask://`` address."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    ) as cluster:
        yield cluster.scheduler_address.replace("tcp://", "dask://")


@pytest.fixture(params=EXECUTORS)
def executor(request: pytest.FixtureRequest) -> str:
    """Each executor in turn (the Dask one on the session's cluster)."""
    name: str = request.param
    if name == "dask":
        address: str = request.getfixturevalue("dask_scheduler")
        return address
    return name
