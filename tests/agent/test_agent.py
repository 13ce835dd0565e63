"""The agent in one process: cron on a simulated clock, dataset and alert triggers, restarts."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from tests.agent.conftest import T0, lines

from mlcycle import Workspace
from mlcycle.agent import CommandLauncher
from mlcycle.clock import SimulatedClock
from mlcycle.errors import AlreadyExists, NotFound, ValidationFailed
from mlcycle.settings import Settings


def _alert(ws: Workspace, name: str, *, value: float = 0.9) -> int:
    """A synthetic ``alert.fired`` event, in the schema monitoring emits."""
    event = ws.metadata.append_event(
        "alert.fired",
        subject=name,
        actor="monitor",
        time=ws.clock.now(),
        payload={"rule": "p99_latency_ms > 250", "severity": "warning", "value": value},
    )
    return event.position


def test_missed_cron_ticks_fire_once_for_the_newest_tick(
    workspace: Workspace, clock: SimulatedClock, launcher: CommandLauncher, launches: Path
) -> None:
    workspace.schedules.add("nightly", "pipelines.py:training", cron="0 2 * * *", params={"n": 3})
    agent = workspace.agent(launcher=launcher)
    assert agent.run_once() == []  # 01:00: the first tick is still ahead
    clock.advance(timedelta(days=3))  # the agent was down over three 02:00 ticks
    [firing] = agent.run_once()
    assert firing.tick == T0 + timedelta(days=2, hours=1)
    assert (firing.key, firing.exit_code) == (f"cron:{firing.tick.isoformat()}", 0)
    assert agent.run_once() == []
    clock.advance(timedelta(hours=22))
    [second] = agent.run_once()
    assert second.tick == T0 + timedelta(days=3, hours=1)
    assert lines(launches) == ["pipelines.py:training --param n=3"] * 2
    assert workspace.schedules.get("nightly").last_fired_tick == second.tick


def test_a_fired_event_records_the_trigger_command_and_exit_code(
    workspace: Workspace, clock: SimulatedClock, launcher: CommandLauncher
) -> None:
    workspace.schedules.add("hourly", "t.py:p", cron="@hourly", params={"exit": 4})
    clock.advance(timedelta(hours=1))
    [firing] = workspace.agent(launcher=launcher, name="a1").run_once()
    [event] = workspace.events(types=["schedule.fired"])
    assert event.subject == "schedules:/hourly"
    assert event.payload == {
        "schedule": "hourly",
        "target": "t.py:p",
        "params": {"exit": "4"},
        "trigger": "cron",
        "key": firing.key,
        "tick": (T0 + timedelta(hours=1)).isoformat(),
        "position": None,
        "event": None,
        "command": list(launcher.command(workspace.schedules.get("hourly"))),
        "pid": firing.pid,
        "exit_code": 4,
        "error": None,
        "agent": "a1",
    }
    assert workspace.schedules.firings("hourly") == [firing]


def test_a_registered_dataset_version_fires_its_schedule(
    workspace: Workspace, launcher: CommandLauncher, launches: Path
) -> None:
    workspace.schedules.add("retrain", "pipelines.py:training", on_dataset="bike")
    workspace.schedules.add("other", "pipelines.py:other", on_dataset="weather")
    agent = workspace.agent(launcher=launcher)
    frame = pd.DataFrame({"hour": [1, 2], "count": [10, 12]})
    version = workspace.data.register("bike", frame, validate=False)
    [firing] = agent.run_once()
    created = workspace.events(types=["dataset.version_created"])[-1]
    assert (firing.schedule, firing.trigger, firing.position) == (
        "retrain",
        "dataset",
        created.position,
    )
    [fired] = workspace.events(types=["schedule.fired"])
    assert fired.payload["event"] == {"type": "dataset.version_created", "subject": version.ref}
    workspace.data.register("bike", frame, validate=False)
    assert len(agent.run_once()) == 1
    assert lines(launches) == ["pipelines.py:training"] * 2


def test_an_alert_fires_only_the_schedules_of_that_alert(
    workspace: Workspace, launcher: CommandLauncher, launches: Path
) -> None:
    workspace.schedules.add("on-latency", "p.py:retrain", on_alert="latency-high")
    _alert(workspace, "drift")
    position = _alert(workspace, "latency-high")
    [firing] = workspace.agent(launcher=launcher).run_once()
    assert (firing.schedule, firing.trigger, firing.key) == (
        "on-latency",
        "alert",
        f"event:{position}",
    )
    assert lines(launches) == ["p.py:retrain"]


def test_events_from_before_a_schedule_was_added_do_not_fire_it(
    workspace: Workspace, launcher: CommandLauncher
) -> None:
    _alert(workspace, "latency-high")
    workspace.schedules.add("on-latency", "p.py:retrain", on_alert="latency-high")
    agent = workspace.agent(launcher=launcher)
    assert agent.run_once() == []
    _alert(workspace, "latency-high")
    assert len(agent.run_once()) == 1


def test_schedules_added_and_removed_between_events_follow_the_log(
    workspace: Workspace, launcher: CommandLauncher, launches: Path
) -> None:
    agent = workspace.agent(launcher=launcher)
    agent.run_once()  # the cursor is now at the head
    _alert(workspace, "a")  # before any schedule: fires nothing
    workspace.schedules.add("s", "p.py:x", on_alert="a")
    _alert(workspace, "a")  # s was removed before the agent got here: fires nothing
    workspace.schedules.remove("s")
    _alert(workspace, "a")  # no schedule: fires nothing
    workspace.schedules.add("s", "p.py:y", on_alert="a")
    workspace.schedules.add("t", "p.py:z", on_alert="a")
    last = _alert(workspace, "a")  # fires the new s, and t added in the same pass
    assert [(f.schedule, f.key) for f in agent.run_once()] == [
        ("s", f"event:{last}"),
        ("t", f"event:{last}"),
    ]
    assert lines(launches) == ["p.py:y", "p.py:z"]


def test_a_restarted_agent_goes_on_from_the_cursor(
    sim_settings: object, workspace: Workspace, launcher: CommandLauncher, launches: Path
) -> None:
    workspace.schedules.add("on-latency", "p.py:retrain", on_alert="latency-high")
    _alert(workspace, "latency-high")
    first = workspace.agent(launcher=launcher, name="first")
    assert len(first.run_once()) == 1
    first.catalog.release_lease(first.consumer, holder=first.name)  # it stops
    restarted = workspace.agent(launcher=launcher, name="restarted")
    assert restarted.run_once() == []
    workspace.metadata.save_cursor(restarted.consumer, 0)  # even a cursor set back
    assert restarted.run_once() == []  # finds every firing claimed
    _alert(workspace, "latency-high")
    assert len(restarted.run_once()) == 1
    assert lines(launches) == ["p.py:retrain"] * 2


def test_a_second_agent_waits_while_the_first_holds_the_lease(
    workspace: Workspace, clock: SimulatedClock, launcher: CommandLauncher
) -> None:
    workspace.schedules.add("on-latency", "p.py:retrain", on_alert="latency-high")
    first = workspace.agent(launcher=launcher, name="first")
    second = workspace.agent(launcher=launcher, name="second")
    assert first.run_once() == []
    _alert(workspace, "latency-high")
    assert second.run_once() == []  # waits: the lease is the first's
    clock.advance(timedelta(seconds=workspace.settings.agent.lease_ttl_s + 1))
    assert len(second.run_once()) == 1  # the first went quiet: its lease expired
    assert first.run_once() == []


def test_a_target_that_cannot_start_is_recorded_and_the_agent_goes_on(
    workspace: Workspace, clock: SimulatedClock
) -> None:
    workspace.schedules.add("hourly", "t.py:p", cron="@hourly")
    broken = CommandLauncher([str(Path(sys.executable).with_name("no-such-program"))])
    clock.advance(timedelta(hours=1))
    [firing] = workspace.agent(launcher=broken).run_once()
    assert (firing.exit_code, firing.pid) == (None, None)
    [event] = workspace.events(types=["schedule.fired"])
    assert "cannot start" in event.payload["error"]


def test_a_launcher_that_raises_does_not_stop_the_agent(
    workspace: Workspace, clock: SimulatedClock
) -> None:
    def explode(schedule: object, firing: object) -> object:
        raise RuntimeError("boom")

    workspace.schedules.add("hourly", "t.py:p", cron="@hourly")
    clock.advance(timedelta(hours=1))
    [firing] = workspace.agent(launcher=explode).run_once()  # type: ignore[arg-type]
    assert firing.command == ()
    assert workspace.events(types=["schedule.fired"])[0].payload["error"] == "RuntimeError: boom"


def test_a_launch_that_times_out_is_killed(workspace: Workspace, clock: SimulatedClock) -> None:
    sleeper = CommandLauncher([sys.executable, "-c", "import time; time.sleep(60)"], timeout_s=0.5)
    workspace.schedules.add("hourly", "t.py:p", cron="@hourly")
    clock.advance(timedelta(hours=1))
    [firing] = workspace.agent(launcher=sleeper).run_once()
    assert firing.exit_code is not None
    assert firing.exit_code < 0
    assert "killed after 0.5 s" in workspace.events(types=["schedule.fired"])[0].payload["error"]


def test_run_forever_stops_and_gives_the_lease_back(
    workspace: Workspace, launcher: CommandLauncher
) -> None:
    import threading

    stop = threading.Event()
    agent = workspace.agent(launcher=launcher, name="forever")
    workspace.schedules.add("on-latency", "p.py:retrain", on_alert="latency-high")
    _alert(workspace, "latency-high")
    thread = threading.Thread(target=agent.run_forever, args=(0.05,), kwargs={"stop": stop})
    thread.start()
    try:
        for _ in range(400):
            if workspace.schedules.firings():
                break
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert len(workspace.schedules.firings()) == 1
    assert (
        agent.catalog.take_lease(agent.consumer, holder="next", now=workspace.clock.now(), ttl_s=1)
        is None
    )


def test_schedule_input_is_checked_before_anything_is_stored(workspace: Workspace) -> None:
    schedules = workspace.schedules
    with pytest.raises(ValidationFailed, match=r"field 2 \(hour\) '25' is out of range 0-23"):
        schedules.add("nightly", "p.py:t", cron="0 25 * * *")
    with pytest.raises(ValidationFailed, match="exactly one trigger"):
        schedules.add("nightly", "p.py:t")
    with pytest.raises(ValidationFailed, match="exactly one trigger"):
        schedules.add("nightly", "p.py:t", cron="@daily", on_alert="x")
    with pytest.raises(ValidationFailed, match="dataset name"):
        schedules.add("nightly", "p.py:t", on_dataset="bad name")
    with pytest.raises(ValidationFailed, match="alert name"):
        schedules.add("nightly", "p.py:t", on_alert=" x")
    assert schedules.list() == []
    schedules.add("nightly", "p.py:t", cron="@daily")
    with pytest.raises(AlreadyExists, match="already a schedule 'nightly'"):
        schedules.add("nightly", "p.py:t", cron="@hourly")
    with pytest.raises(NotFound, match="no schedule 'nope'"):
        schedules.remove("nope")


def test_a_cron_tick_missed_while_no_agent_ran_fires_once_when_one_returns(
    sim_settings: Settings, clock: SimulatedClock, launcher: CommandLauncher, launches: Path
) -> None:
    with Workspace.open(sim_settings) as workspace:
        workspace.schedules.add("nightly", "p.py:train", cron="0 2 * * *")
        first = workspace.agent(launcher=launcher, name="first")
        clock.advance(timedelta(hours=1))
        assert len(first.run_once()) == 1  # 02:00 on the first day
        first.catalog.release_lease(first.consumer, holder=first.name)  # it stops
    clock.advance(timedelta(days=3))  # no agent runs over three 02:00 ticks
    with Workspace.open(sim_settings) as workspace:
        back = workspace.agent(launcher=launcher, name="back")
        [firing] = back.run_once()
        assert firing.tick == T0 + timedelta(days=3, hours=1)  # the newest missed tick only
        assert back.run_once() == []
    assert lines(launches) == ["p.py:train"] * 2
