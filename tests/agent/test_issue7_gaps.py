"""Issue 7 item 4 from the prediction log up: monitor runs fire the alerts the loop acts on.

The other continuous-training tests fire alerts from hand-made monitor results.
Here every alert comes from ``ws.monitor.run`` over predictions written through
the real ``PredictionLog`` and labelled through the real ``FeedbackLog``: a
decaying production model starts a retrain, the shadow wins and is promoted,
its good window resolves the alert, and a later window where the promoted
model decays fires it again and rolls it back.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.agent.training_project import (
    DEPLOYMENT,
    FEATURES,
    MODEL,
    deploy_production,
    label,
    policy,
    settings_for,
    traffic,
    world,
    write_pipeline,
)

from mlcycle.clock import SimulatedClock
from mlcycle.workspace import Workspace

T0 = datetime(2030, 3, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    home = tmp_path / "project"
    write_pipeline(home)
    settings = settings_for(home, policy(watch="5d"))
    SimulatedClock(settings.clock_state_file).set(T0)
    with Workspace.open(settings) as opened:
        deploy_production(opened)
        yield opened


def _at(ws: Workspace, moment: datetime) -> None:
    SimulatedClock(ws.settings.clock_state_file).set(moment)


def _day_of_traffic(
    ws: Workspace, day: int, *, sign: float, version: int, shadow: int | None = None
) -> None:
    """150 labelled requests at 02:00 of ``day`` in a world of ``sign``, answered by ``version``."""
    live = world(100 + day, sign, 150)
    ids = [f"d{day}-{i}" for i in range(150)]
    old = 3 * live["x1"] + 2 * live["x2"]  # what version 1 learnt
    new = 3 * live["x1"] - 2 * live["x2"]  # what the retrain learns
    answers = {1: old, 2: new}
    variants = [("primary", version, False, answers[version].to_numpy())]
    if shadow is not None:
        variants.append(("shadow", shadow, True, answers[shadow].to_numpy()))
    traffic(
        ws,
        ids=ids,
        at=T0 + timedelta(days=day, hours=2),
        inputs=live[FEATURES],
        variants=variants,
    )
    label(ws, ids, live["y"].to_numpy())


def _decay_alerts(ws: Workspace) -> list[str]:
    return [a.id for a in ws.alerts.list() if a.rule == "demand-decay" and a.state == "firing"]


def test_a_monitored_decay_retrains_promotes_and_a_later_decay_rolls_back(ws: Workspace) -> None:
    # Day 0: the world has turned; production (version 1) is wrong on every labelled request.
    _day_of_traffic(ws, 0, sign=-1.0, version=1)
    _at(ws, T0 + timedelta(days=1, hours=1))
    [day0] = ws.monitor.run(DEPLOYMENT)
    assert day0.values["rmse"] > 1.5  # type: ignore[operator]
    [decay] = _decay_alerts(ws)
    steps = ws.training.run_once()
    assert [s.event for s in steps][-1] == "training.trial_started", steps[-1].why
    assert {s.alert_id for s in steps} == {decay}

    # Day 1: the shadow (version 2) answers the same requests better; the loop promotes it.
    _day_of_traffic(ws, 1, sign=-1.0, version=1, shadow=2)
    _at(ws, T0 + timedelta(days=1, hours=3))
    [promoted] = ws.training.run_once()
    assert promoted.event == "training.promoted", promoted.why
    assert promoted.alert_id == decay
    assert ws.registry.get(f"{MODEL}@production").version == 2

    # The window of day 1 still holds version 1's answers from before the promotion: the alert
    # keeps firing, and that is no reason to roll version 2 back.
    _at(ws, T0 + timedelta(days=2, hours=1))
    [day1] = ws.monitor.run(DEPLOYMENT)
    assert day1.values["rmse"] > 1.5  # type: ignore[operator]  # version 1's answers
    assert ws.training.run_once() == []
    assert ws.registry.get(f"{MODEL}@production").version == 2

    # Day 2: version 2 answers well and the alert resolves.
    _day_of_traffic(ws, 2, sign=-1.0, version=2)
    _at(ws, T0 + timedelta(days=3, hours=1))
    [day2] = ws.monitor.run(DEPLOYMENT)
    assert day2.values["rmse"] < 1.5  # type: ignore[operator]
    assert ws.alerts.get(decay).state == "resolved"
    assert ws.training.run_once() == []

    # Day 3: the world turns back, version 2 decays within the watch: rolled back to version 1.
    _day_of_traffic(ws, 3, sign=1.0, version=2)
    _at(ws, T0 + timedelta(days=4, hours=1))
    [day3] = ws.monitor.run(DEPLOYMENT)
    assert day3.values["rmse"] > 1.5  # type: ignore[operator]
    [rolled] = ws.training.run_once()
    assert rolled.event == "training.rolled_back", rolled.why
    assert rolled.payload["started_by"] == decay
    assert rolled.payload["to_version"] == 1
    assert ws.registry.get(f"{MODEL}@production").version == 1
    assert ws.training.status(DEPLOYMENT).phase == "idle"


def test_a_decay_still_firing_on_a_day_the_promoted_version_answered_rolls_back(
    ws: Workspace,
) -> None:
    _day_of_traffic(ws, 0, sign=-1.0, version=1)
    _at(ws, T0 + timedelta(days=1, hours=1))
    ws.monitor.run(DEPLOYMENT)
    [decay] = _decay_alerts(ws)
    ws.training.run_once()
    _day_of_traffic(ws, 1, sign=-1.0, version=1, shadow=2)
    _at(ws, T0 + timedelta(days=1, hours=3))
    [promoted] = ws.training.run_once()
    assert promoted.event == "training.promoted", promoted.why

    # Day 1's window straddles the promotion (version 1's answers): the alert holds, no rollback.
    _at(ws, T0 + timedelta(days=2, hours=1))
    ws.monitor.run(DEPLOYMENT)
    assert ws.training.run_once() == []

    # Day 2: the world turned back, version 2 answers it badly; the alert never resolved.
    _day_of_traffic(ws, 2, sign=1.0, version=2)
    _at(ws, T0 + timedelta(days=3, hours=1))
    [day2] = ws.monitor.run(DEPLOYMENT)
    assert day2.values["rmse"] > 1.5  # type: ignore[operator]
    assert _decay_alerts(ws) == [decay]  # the same incident: no new alert.fired
    [rolled] = ws.training.run_once()
    assert rolled.event == "training.rolled_back", rolled.why
    assert (rolled.alert_id, rolled.payload["started_by"]) == (decay, decay)
    assert "window ending 2030-" in rolled.why
    assert ws.registry.get(f"{MODEL}@production").version == 1
    assert ws.training.run_once() == []
