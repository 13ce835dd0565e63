"""Fixtures for the agent: a simulated clock, a store, and a real target script to launch."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlcycle import Workspace
from mlcycle.agent import CommandLauncher
from mlcycle.clock import SimulatedClock
from mlcycle.settings import ClockSettings, Settings

T0 = datetime(2030, 1, 1, 1, 0, tzinfo=UTC)

TARGET_SCRIPT = """\
import sys
from pathlib import Path

out = Path(sys.argv[1])
with out.open("a") as stream:
    stream.write(" ".join(sys.argv[2:]) + "\\n")
sys.exit(int(dict(a.split("=", 1) for a in sys.argv[3:] if "=" in a).get("exit", "0")))
"""


@pytest.fixture
def target_script(tmp_path: Path) -> Path:
    """A real target: appends its arguments as a line to the file named first, exits with exit=N."""
    path = tmp_path / "target.py"
    path.write_text(TARGET_SCRIPT)
    return path


@pytest.fixture
def launches(tmp_path: Path) -> Path:
    """The file the target script appends one line to per launch."""
    return tmp_path / "launches.txt"


@pytest.fixture
def launcher(target_script: Path, launches: Path) -> CommandLauncher:
    """Launches the target script: ``python target.py launches.txt TARGET --param k=v``."""
    return CommandLauncher([sys.executable, str(target_script), str(launches)])


@pytest.fixture
def sim_settings(tmp_path: Path) -> Settings:
    """A project whose clock is simulated, set to ``T0``."""
    settings = Settings(
        home=tmp_path / "project", actor="tester", clock=ClockSettings(mode="simulated")
    )
    SimulatedClock(settings.clock_state_file).set(T0)
    return settings


@pytest.fixture
def workspace(sim_settings: Settings) -> Iterator[Workspace]:
    """An open workspace on ``sim_settings``."""
    with Workspace.open(sim_settings) as ws:
        yield ws


@pytest.fixture
def clock(sim_settings: Settings) -> SimulatedClock:
    """The simulated clock every process of the project reads."""
    return SimulatedClock(sim_settings.clock_state_file)


def lines(path: Path) -> list[str]:
    """The launches recorded so far."""
    return path.read_text().splitlines() if path.exists() else []
