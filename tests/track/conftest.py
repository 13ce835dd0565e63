"""Workspaces on a real SQLite file and local artifact store under ``tmp_path``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlcycle.settings import ClockSettings, Settings
from mlcycle.workspace import Workspace


@pytest.fixture
def workspace(settings: Settings) -> Iterator[Workspace]:
    """A workspace on a fresh SQLite file, closed after the test."""
    with Workspace.open(settings) as opened:
        yield opened


@pytest.fixture
def simulated(settings: Settings) -> Settings:
    """The test's settings with simulated time."""
    return settings.model_copy(update={"clock": ClockSettings(mode="simulated")})
