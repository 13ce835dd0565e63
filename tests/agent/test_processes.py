"""Two real agent processes on one store, racing over many ticks and events: each fires once.

The agents run in different groups, so they do not take turns through the
lease: both read every event and see every tick, and only the claim in the
store keeps each firing single. The clock is simulated and shared with them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tests.agent.conftest import T0, TARGET_SCRIPT, lines

from mlcycle import Workspace
from mlcycle.clock import SimulatedClock
from mlcycle.project import init_project
from mlcycle.settings import ClockSettings, Settings, StoreSettings

ROUNDS = 6
ALERTS_PER_ROUND = 3
pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def metadata_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


def _start_agents(
    home: Path, metadata_url: str | None, launches: Path
) -> Iterator[subprocess.Popen[bytes]]:
    script = home / "target.py"
    script.write_text(TARGET_SCRIPT)
    for group in ("east", "west"):
        env = {
            **os.environ,
            "MLCYCLE_CLOCK__MODE": "simulated",
            "MLCYCLE_AGENT__GROUP": group,
            "MLCYCLE_AGENT__COMMAND": json.dumps([sys.executable, str(script), str(launches)]),
        }
        store = ["--metadata-url", metadata_url] if metadata_url else []
        command = [
            sys.executable,
            "-m",
            "mlcycle",
            "--home",
            str(home),
            *store,
            "agent",
            "--poll",
            "0.05",
        ]
        yield subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)


def _wait_for(workspace: Workspace, count: int, agents: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120  # a guard against hanging, not a timing assertion
    while len(workspace.schedules.firings()) < count:
        assert all(agent.poll() is None for agent in agents), "an agent process died"
        assert time.monotonic() < deadline, f"waited for {count} firings"
        time.sleep(0.05)


def test_two_agent_processes_fire_each_trigger_exactly_once(
    tmp_path: Path, metadata_url: str | None
) -> None:
    home = init_project(tmp_path / "project")
    launches = tmp_path / "launches.txt"
    settings = Settings(
        home=home,
        actor="tester",
        clock=ClockSettings(mode="simulated"),
        store=StoreSettings(metadata_url=metadata_url),
    )
    clock = SimulatedClock(settings.clock_state_file)
    clock.set(T0)
    with Workspace.open(settings) as workspace:
        workspace.schedules.add("hourly", "p.py:hourly", cron="0 * * * *")
        workspace.schedules.add("on-latency", "p.py:retrain", on_alert="latency-high")
        agents = list(_start_agents(home, metadata_url, launches))
        try:
            expected = 0
            for _ in range(ROUNDS):
                clock.advance(timedelta(hours=1))
                for _ in range(ALERTS_PER_ROUND):
                    workspace.metadata.append_event(
                        "alert.fired",
                        subject="latency-high",
                        actor="monitor",
                        time=clock.now(),
                        payload={"rule": "p99 > 250", "severity": "warning", "value": 300.0},
                    )
                expected += 1 + ALERTS_PER_ROUND
                _wait_for(workspace, expected, agents)
            time.sleep(0.5)  # both agents get more passes: nothing more may fire
        finally:
            for agent in agents:
                agent.send_signal(signal.SIGTERM)
            codes = [agent.wait(timeout=60) for agent in agents]
        firings = workspace.schedules.firings()
        fired_events = workspace.events(types=["schedule.fired"])
    assert codes == [0, 0]
    ticks = sorted(f.tick for f in firings if f.schedule == "hourly")
    assert ticks == [T0 + timedelta(hours=h) for h in range(1, ROUNDS + 1)]
    positions = [f.position for f in firings if f.schedule == "on-latency"]
    assert len(positions) == len(set(positions)) == ROUNDS * ALERTS_PER_ROUND
    assert len(fired_events) == len(firings) == len(lines(launches)) == expected
    assert {e.payload["exit_code"] for e in fired_events} == {0}
