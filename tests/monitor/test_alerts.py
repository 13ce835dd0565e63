"""Alerts over monitor results: firing, dedup, resolution, cooldown, events the agent follows."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.agent.conftest import TARGET_SCRIPT

from mlcycle import Workspace
from mlcycle.agent import CommandLauncher
from mlcycle.clock import SimulatedClock
from mlcycle.errors import ValidationFailed
from mlcycle.monitor import Alerts, MonitorResult, parse_rule
from mlcycle.settings import ClockSettings, Settings, StoreSettings

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)

RULES = {
    "drift-high": {
        "when": "drift_share > 0.3 for 2 windows",
        "severity": "critical",
        "deployments": ["bike"],
        "cooldown": "2d",
        "notify": ["log"],
        "description": "retrain on recent data",
    },
    "f1-low": {"when": "f1 < 0.8", "notify": ["log"]},
}


def make_settings(home: Path, metadata_url: str | None = None, **alerts: Any) -> Settings:
    settings = Settings(
        home=home,
        actor="tester",
        clock=ClockSettings(mode="simulated"),
        store=StoreSettings(metadata_url=metadata_url),
        alerts={
            "rules": RULES,
            "notifiers": {"log": {"kind": "file", "path": "alerts.jsonl"}},
            **alerts,
        },
    )
    SimulatedClock(settings.clock_state_file).set(T0)
    return settings


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def workspace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    with Workspace.open(make_settings(tmp_path / "project", url)) as ws:
        yield ws


@pytest.fixture
def clock(workspace: Workspace) -> SimulatedClock:
    return SimulatedClock(workspace.settings.clock_state_file)


def window(day: int, deployment: str = "bike", **values: float | None) -> MonitorResult:
    return MonitorResult(deployment, T0 + day * DAY, values)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def settle(alerts: Alerts) -> None:
    """Wait until nothing is pending: the courier's thread may be sending what is due."""
    deadline = time.monotonic() + 60  # a guard against hanging, not a timing assertion
    while alerts.deliveries(status="pending") and time.monotonic() < deadline:
        alerts.deliver()
        time.sleep(0.05)
    assert alerts.deliveries(status="pending") == []


def test_a_rule_fires_once_it_held_for_its_windows_and_stays_single(
    workspace: Workspace, clock: SimulatedClock
) -> None:
    alerts = workspace.alerts
    assert alerts.evaluate(window(1, drift_share=0.35)) == []  # one window is not two
    clock.advance(DAY)
    [fired] = alerts.evaluate(window(2, drift_share=0.41))
    assert (fired.rule, fired.deployment, fired.state, fired.severity) == (
        "drift-high",
        "bike",
        "firing",
        "critical",
    )
    assert timedelta(0) <= fired.fired_at - (T0 + DAY) < timedelta(minutes=10)  # the clock's time
    assert [w.values for w in fired.windows] == [{"drift_share": 0.35}, {"drift_share": 0.41}]
    assert "held on bike for 2 windows in a row" in fired.why
    assert "drift_share = 0.35, 0.41" in fired.why
    for day in (3, 4, 5):  # still drifting: no new alert, no new event
        assert alerts.evaluate(window(day, drift_share=0.5)) == []
    [event] = workspace.events(types=["alert.fired"])
    assert (event.subject, event.actor, event.time) == ("drift-high", "tester", fired.fired_at)
    payload = event.payload
    assert payload["rule"] == "drift_share > 0.3 for 2 windows"
    assert (payload["severity"], payload["deployment"], payload["value"]) == (
        "critical",
        "bike",
        0.41,
    )
    assert payload["values"] == {"drift_share": 0.41}
    assert payload["alert_id"] == fired.id
    assert payload["description"] == "retrain on recent data"
    assert [w["values"]["drift_share"] for w in payload["windows"]] == [0.35, 0.41]
    assert payload["why"] == fired.why
    assert alerts.list(state="firing") == [alerts.get(fired.id)]


def test_a_failing_window_resolves_and_notifies_and_a_new_streak_starts(
    workspace: Workspace, clock: SimulatedClock
) -> None:
    alerts = workspace.alerts
    alerts.evaluate([window(1, drift_share=0.4), window(2, drift_share=0.4)])
    settle(alerts)  # a jump of days while the courier holds a send would expire its lease
    clock.advance(3 * DAY)  # past the 2-day cooldown
    [resolved] = alerts.evaluate(window(3, drift_share=0.1))
    assert (resolved.state, resolved.resolved_window_end) == ("resolved", T0 + 3 * DAY)
    [event] = workspace.events(types=["alert.resolved"])
    assert resolved.resolved_at == event.time
    assert resolved.resolved_at is not None
    assert resolved.resolved_at >= T0 + 3 * DAY
    assert "no longer holds on bike" in event.payload["why"]
    assert event.payload["values"] == {"drift_share": 0.1}
    settle(alerts)
    clock.advance(3 * DAY)  # past the 2-day cooldown: a new firing is a new incident
    assert alerts.evaluate(window(4, drift_share=0.9)) == []  # a new streak of one
    [again] = alerts.evaluate(window(5, drift_share=0.9))
    assert again.id != resolved.id
    assert [a.state for a in alerts.list()] == ["firing", "resolved"]
    settle(alerts)
    log = [json.loads(line) for line in lines(workspace.settings.home / "alerts.jsonl")]
    assert [(entry["event"], entry["alert_id"]) for entry in log] == [
        ("alert.fired", resolved.id),
        ("alert.resolved", resolved.id),
        ("alert.fired", again.id),
    ]


def test_a_flap_within_the_cooldown_reopens_the_alert_without_notifying(
    workspace: Workspace, clock: SimulatedClock
) -> None:
    alerts = workspace.alerts
    [fired] = alerts.evaluate([window(1, drift_share=0.4), window(2, drift_share=0.4)])
    clock.advance(DAY)
    alerts.evaluate(window(3, drift_share=0.1))
    clock.advance(DAY)  # one day after resolving: inside the 2-day cooldown
    [reopened] = alerts.evaluate([window(4, drift_share=0.5), window(5, drift_share=0.5)])
    assert (reopened.id, reopened.state, reopened.flaps) == (fired.id, "firing", 1)
    assert reopened.resolved_at is None
    [event] = workspace.events(types=["alert.reopened"])
    assert "again within the cooldown" in event.payload["why"]
    clock.advance(DAY)
    alerts.evaluate(window(6, drift_share=0.0))  # resolves again, quietly
    assert [e.type for e in workspace.events() if e.type.startswith("alert.")] == [
        "alert.fired",
        "alert.resolved",
        "alert.reopened",
        "alert.resolved",
    ]
    events = [d.event for d in alerts.deliveries(alert_id=fired.id)]
    assert events == ["alert.fired", "alert.resolved"]  # the flap notified nobody
    clock.advance(3 * DAY)  # the cooldown is over: the next firing is a new incident
    [new] = alerts.evaluate([window(7, drift_share=0.5), window(8, drift_share=0.5)])
    assert (new.id != fired.id, new.flaps) == (True, 0)


def test_windows_without_data_or_seen_before_change_nothing(workspace: Workspace) -> None:
    alerts = workspace.alerts
    alerts.evaluate(window(1, drift_share=0.4))
    metadata: Any = workspace.metadata
    state = metadata.get_alert_rule_state("drift-high", "bike")
    alerts.evaluate(window(2, f1=0.9))  # no drift_share: the rule cannot say
    alerts.evaluate(window(3, drift_share=float("nan")))
    alerts.evaluate(window(4, drift_share=None))
    alerts.evaluate(window(1, drift_share=0.9))  # the same window again
    alerts.evaluate(window(0, drift_share=0.9))  # an older one
    assert metadata.get_alert_rule_state("drift-high", "bike") == state
    [fired] = alerts.evaluate(window(5, drift_share=0.4))  # the streak went on over the gaps
    assert [w.window_end for w in fired.windows] == [T0 + DAY, T0 + 5 * DAY]
    assert alerts.evaluate(window(5, drift_share=0.4)) == []  # evaluating twice: once


def test_rules_watch_only_their_deployments(workspace: Workspace) -> None:
    alerts = workspace.alerts
    results = [window(d, "taxi", drift_share=0.9, f1=0.5) for d in (1, 2, 3)]
    [f1_low] = alerts.evaluate(results)  # drift-high watches bike only; f1-low every deployment
    assert (f1_low.rule, f1_low.deployment) == ("f1-low", "taxi")
    assert f1_low.why.startswith("f1 < 0.8 on taxi in the window ending 2030-01-02 00:00 UTC")


def test_the_agent_fires_its_on_alert_schedule_on_a_real_alert(
    workspace: Workspace, clock: SimulatedClock, tmp_path: Path
) -> None:
    script = tmp_path / "target.py"
    script.write_text(TARGET_SCRIPT)
    launches = tmp_path / "launches.txt"
    workspace.schedules.add("retrain", "pipelines.py:training", on_alert="drift-high")
    workspace.schedules.add("other", "pipelines.py:other", on_alert="f1-low")
    workspace.alerts.evaluate([window(1, drift_share=0.4), window(2, drift_share=0.4)])
    agent = workspace.agent(launcher=CommandLauncher([sys.executable, str(script), str(launches)]))
    [firing] = agent.run_once()
    assert (firing.schedule, firing.trigger, firing.exit_code) == ("retrain", "alert", 0)
    assert lines(launches) == ["pipelines.py:training"]
    workspace.alerts.evaluate(window(3, drift_share=0.5))  # still firing: nothing new to follow
    assert agent.run_once() == []


def test_two_evaluators_of_one_window_fire_one_alert(workspace: Workspace) -> None:
    rule = parse_rule("drift-high", "drift_share > 0.3")
    metadata: Any = workspace.metadata
    evaluators = [
        Alerts(log=metadata, clock=workspace.clock, actor=f"m{i}", rules=[rule]) for i in range(4)
    ]
    barrier = threading.Barrier(len(evaluators))
    fired: list[int] = []

    def run(alerts: Alerts) -> None:
        barrier.wait()
        fired.append(len(alerts.evaluate(window(1, drift_share=0.9))))

    threads = [threading.Thread(target=run, args=(a,)) for a in evaluators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for alerts in evaluators:
        alerts.close()
    assert sorted(fired) == [0, 0, 0, 1]
    assert len(workspace.events(types=["alert.fired"])) == 1


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: MonitorResult("bike", datetime(2030, 1, 1)), "has no time zone"),  # noqa: DTZ001
        (lambda: MonitorResult("bad name", T0), "deployment name 'bad name'"),
        (lambda: MonitorResult("bike", T0, {"f1": "high"}), "metric 'f1' of deployment 'bike'"),
        (lambda: MonitorResult("bike", T0, {"f1": True}), "monitor results hold numbers"),
    ],
)
def test_bad_monitor_results_are_refused(make: Any, problem: str) -> None:
    with pytest.raises(ValidationFailed, match=problem):
        make()
