"""Workspaces on a real SQLite file and local artifact store under ``tmp_path``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

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


@pytest.fixture
def wait_until() -> Callable[[Callable[[], bool]], None]:
    """Poll a condition until true; the timeout only guards against a hang."""

    def wait(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"condition not met within {timeout_s} s")
            time.sleep(0.02)

    return wait
