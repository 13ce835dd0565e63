"""A workspace per test, and the folder where test steps count their executions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlcycle.project import init_project
from mlcycle.settings import Settings
from mlcycle.workspace import Workspace


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
