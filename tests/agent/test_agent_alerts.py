"""The agent's pass sends the alert notifications that are due: it is what retries them.

Real parts: a SQLite workspace, the simulated clock, a webhook receiver on
loopback that is down (nothing listening), slow (holding the request) or up.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.agent.conftest import T0
from tests.monitor.alert_receivers import free_port, webhook_receiver

from mlcycle import Workspace
from mlcycle.agent import CommandLauncher
from mlcycle.clock import SimulatedClock
from mlcycle.monitor import MonitorResult
from mlcycle.settings import ClockSettings, Settings

RULE = {"when": "drift_share > 0.3", "severity": "critical", "notify": ["hook"]}


def settings_for(home: Path, url: str, **notifier: Any) -> Settings:
    settings = Settings(
        home=home,
        actor="tester",
        clock=ClockSettings(mode="simulated"),
        alerts={
            "rules": {"drift-high": RULE},
            "notifiers": {"hook": {"kind": "webhook", "url": url, **notifier}},
        },
    )
    SimulatedClock(settings.clock_state_file).set(T0)
    return settings


@contextmanager
def fired_unreceived(settings: Settings) -> Iterator[SimulatedClock]:
    """Monitoring fires an alert in a workspace of its own while the receiver is down or slow."""
    with Workspace.open(settings) as ws:
        ws.alerts.evaluate(MonitorResult("bike", T0, {"drift_share": 0.6}))
        ws.alerts.close()  # its courier's last pass: the send fails
        [waiting] = ws.alerts.deliveries()
        assert (waiting.status, waiting.attempts) == ("pending", 1)
    yield SimulatedClock(settings.clock_state_file)


def agent_of(ws: Workspace) -> Any:
    return ws.agent(launcher=CommandLauncher(["true"]))


def test_a_receiver_that_comes_back_gets_the_alert_on_a_later_agent_pass(tmp_path: Path) -> None:
    port = free_port()
    settings = settings_for(tmp_path, f"http://127.0.0.1:{port}/hooks/alerts")
    with fired_unreceived(settings) as clock, Workspace.open(settings) as ws:
        agent = agent_of(ws)
        with webhook_receiver(port) as hook:
            agent.run_once()
            assert agent.deliveries == []  # its backoff is not over yet
            assert hook.received == []
            clock.advance(timedelta(seconds=31))  # the first retry is due after 30 s
            agent.run_once()
        [done] = agent.deliveries
        assert (done.status, done.attempts, done.last_error) == ("delivered", 2, None)
        assert [b["text"].split(":")[0] for b in hook.received] == [
            "[CRITICAL] drift-high firing on bike"
        ]
        agent.run_once()  # delivered once: never again
        assert agent.deliveries == []
        assert len(hook.received) == 1


def test_a_receiver_that_stays_down_keeps_the_alert_queued_and_the_pass_going(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, f"http://127.0.0.1:{free_port()}/hooks/alerts")
    with fired_unreceived(settings) as clock, Workspace.open(settings) as ws:
        ws.schedules.add("on-bike", "train.py", on_dataset="bike")
        ws.metadata.append_event(
            "dataset.version_created",
            subject="data:/bike/1",
            actor="tester",
            time=clock.now(),
            payload={"name": "bike"},
        )
        agent = agent_of(ws)
        clock.advance(timedelta(seconds=31))
        fired = agent.run_once()
        assert [f.schedule for f in fired] == ["on-bike"]  # the schedules still fired
        [failed] = agent.deliveries
        assert (failed.status, failed.attempts) == ("pending", 2)
        assert "Connection refused" in (failed.last_error or "")
        assert failed.next_attempt_at >= T0 + timedelta(seconds=31 + 60)  # the backoff doubled
        agent.run_once()
        assert agent.deliveries == []  # not due again before its backoff
        [queued] = ws.alerts.deliveries()
        assert (queued.status, queued.attempts) == ("pending", 2)


def test_a_slow_receiver_holds_the_pass_no_longer_than_its_timeout(tmp_path: Path) -> None:
    with webhook_receiver() as hook:
        hook.hold = threading.Event()  # answers only when released (when the test ends)
        settings = settings_for(tmp_path, hook.url, timeout_s=0.2)
        with fired_unreceived(settings) as clock, Workspace.open(settings) as ws:
            agent = agent_of(ws)
            clock.advance(timedelta(seconds=31))
            agent.run_once()  # returns although the receiver never answers
            [late] = agent.deliveries
            assert (late.status, late.attempts) == ("pending", 2)
            assert "timed out" in (late.last_error or "")


def test_without_notifiers_the_agent_sends_nothing(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, actor="tester", clock=ClockSettings(mode="simulated"))
    with Workspace.open(settings) as ws:
        agent = agent_of(ws)
        assert agent.alerts is None
        assert agent.run_once() == []
        assert agent.deliveries == []
