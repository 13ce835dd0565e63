from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlcycle.clock import RealClock, SimulatedClock, open_clock
from mlcycle.errors import ValidationFailed
from mlcycle.settings import ClockSettings, Settings


def test_real_clock_is_aware_utc() -> None:
    now = RealClock().now()
    assert now.tzinfo is UTC
    assert abs(now.timestamp() - RealClock().time()) < 5


def test_simulated_clock_starts_at_real_time_without_state(tmp_path: Path) -> None:
    clock = SimulatedClock(tmp_path / "clock.json")
    assert abs(clock.time() - RealClock().time()) < 5


def test_simulated_clock_set_and_advance(tmp_path: Path) -> None:
    clock = SimulatedClock(tmp_path / "clock.json")
    clock.set(datetime(2031, 3, 1, tzinfo=UTC))
    clock.advance(timedelta(days=45))
    assert clock.now().date().isoformat() == "2031-04-15"


def test_simulated_time_refuses_naive_datetimes(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="no timezone"):
        SimulatedClock(tmp_path / "clock.json").set(datetime(2031, 3, 1))  # noqa: DTZ001


def test_advancing_in_one_process_moves_time_in_another(tmp_path: Path) -> None:
    state = tmp_path / "clock.json"
    reader = SimulatedClock(state)
    before = reader.time()
    script = (
        "import sys, datetime, pathlib\n"
        "from mlcycle.clock import SimulatedClock\n"
        "SimulatedClock(pathlib.Path(sys.argv[1])).advance(datetime.timedelta(days=30))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(state)], check=True, timeout=60)
    assert reader.time() - before >= 30 * 86400 - 5


def test_subprocess_sees_the_simulated_time_set_here(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, clock=ClockSettings(mode="simulated"))
    clock = open_clock(settings)
    assert isinstance(clock, SimulatedClock)
    clock.set(datetime(2030, 6, 1, tzinfo=UTC))
    script = (
        "from mlcycle.clock import open_clock\n"
        "from mlcycle.settings import load_settings\n"
        "print(open_clock(load_settings()).now().date())\n"
    )
    env_result = subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "MLCYCLE_HOME": str(tmp_path),
            "MLCYCLE_CLOCK__MODE": "simulated",
        },
    )
    assert env_result.stdout.strip() == "2030-06-01"


def test_real_mode_gives_the_real_clock(settings: Settings) -> None:
    assert isinstance(open_clock(settings), RealClock)
