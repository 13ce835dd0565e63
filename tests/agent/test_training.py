"""Continuous training on a real project: alerts start retrains, trials decide, rollbacks undo."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsRegressor
from tests.agent.training_project import (
    DEPLOYMENT,
    FEATURES,
    MODEL,
    NOTICES,
    deploy_production,
    fire,
    label,
    policy,
    settings_for,
    traffic,
    world,
    write_pipeline,
)

from mlcycle import Workspace
from mlcycle.clock import SimulatedClock
from mlcycle.errors import ValidationFailed

T0 = datetime(2030, 3, 1, 0, 0, tzinfo=UTC)

Open = Callable[..., Workspace]


@pytest.fixture
def open_project(tmp_path: Path) -> Iterator[Open]:
    """Opens the project (pipeline written, production deployed) with a policy's overrides."""
    home = tmp_path / "project"
    write_pipeline(home)
    opened: list[Workspace] = []

    def open_(**overrides: Any) -> Workspace:
        settings = settings_for(home, policy(**overrides))
        if not opened:
            SimulatedClock(settings.clock_state_file).set(T0)
        ws = Workspace.open(settings)
        if not opened:
            deploy_production(ws)
        opened.append(ws)
        return ws

    yield open_
    for ws in opened:
        ws.close()


def _types(steps: list[Any]) -> list[str]:
    return [s.event.removeprefix("training.") for s in steps]


def _serve_trial(ws: Workspace, *, candidate_better: bool, rows: int = 150, start: int = 0) -> None:
    """``rows`` labelled requests answered by production and shadowed by version 2."""
    live = world(7 + start, -1.0, rows)
    ids = [f"r{start + i}" for i in range(rows)]
    old = 3 * live["x1"] + 2 * live["x2"]
    new = 3 * live["x1"] - 2 * live["x2"]
    shadow = new if candidate_better else old + 0.3
    now = ws.clock.now()
    traffic(
        ws,
        ids=ids,
        at=now,
        inputs=live[FEATURES],
        variants=[("primary", 1, False, old.to_numpy()), ("shadow", 2, True, shadow.to_numpy())],
    )
    label(ws, ids, live["y"].to_numpy())


def _advance(ws: Workspace, hours: float) -> None:
    SimulatedClock(ws.settings.clock_state_file).advance(timedelta(hours=hours))


def test_a_drift_alert_retrains_shadows_and_promotes_the_better_model(open_project: Open) -> None:
    ws = open_project()
    [alert_id] = fire(ws, "drift_share", 0.6, T0)
    steps = ws.training.run_once()
    assert _types(steps) == ["started", "candidate", "gated", "trial_started"]
    assert {s.alert_id for s in steps} == {alert_id}
    assert steps[1].version == 2
    assert steps[2].payload["passed"] is True
    trial = ws.deployments.get(DEPLOYMENT)
    assert trial.policy == "shadow"
    assert [(v.name, v.model, v.shadow) for v in trial.variants] == [
        ("primary", f"{MODEL}@production", False),
        ("shadow", f"{MODEL}/2", True),
    ]
    _advance(ws, 1)
    _serve_trial(ws, candidate_better=True)
    [promoted] = ws.training.run_once()
    assert promoted.event == "training.promoted"
    assert promoted.alert_id == alert_id
    assert ws.registry.get(f"{MODEL}@production").version == 2
    served = ws.deployments.get(DEPLOYMENT)
    assert served.policy == "single"
    assert served.variants[0].model == f"{MODEL}@production"
    verdict = promoted.payload["verdict"]
    assert verdict["labelled"] == 150
    assert verdict["test"] == "paired"
    assert verdict["candidate_value"] < verdict["production_value"] * 0.95
    status = ws.training.status(DEPLOYMENT)
    assert (status.phase, status.production) == ("watching", 2)
    assert ws.training.run_once() == []


def test_a_rollback_alert_within_the_watch_restores_the_previous_version(
    open_project: Open,
) -> None:
    ws = open_project()
    [drift_id] = fire(ws, "drift_share", 0.6, T0)
    ws.training.run_once()
    _advance(ws, 1)
    _serve_trial(ws, candidate_better=True)
    ws.training.run_once()
    _advance(ws, 12)
    [decay_id] = fire(ws, "rmse", 2.5, T0 + timedelta(hours=13))
    [rolled] = ws.training.run_once()
    assert rolled.event == "training.rolled_back"
    assert rolled.alert_id == decay_id
    assert rolled.payload["started_by"] == drift_id
    assert rolled.payload["to_version"] == 1
    assert "rmse > 1.5" in rolled.why
    assert ws.registry.get(f"{MODEL}@production").version == 1
    assert [m.kind for m in ws.registry.history(MODEL, "production")][-1] == "rollback"
    assert ws.training.status(DEPLOYMENT).phase == "idle"


def test_a_failing_retrain_leaves_production_and_the_alert_alone(open_project: Open) -> None:
    ws = open_project(params={"mode": "fail"})
    before = ws.deployments.get(DEPLOYMENT)
    [alert_id] = fire(ws, "drift_share", 0.6, T0)
    steps = ws.training.run_once()
    assert _types(steps) == ["started", "failed"]
    failed = steps[1]
    assert failed.alert_id == alert_id
    assert failed.payload["stage"] == "pipeline"
    assert "the training data is unreachable" in failed.why
    assert "untouched" in failed.why
    assert ws.alerts.get(alert_id).state == "firing"
    assert ws.registry.get(f"{MODEL}@production").version == 1
    assert ws.deployments.get(DEPLOYMENT).revision == before.revision
    status = ws.training.status(DEPLOYMENT)
    assert status.phase == "idle"
    assert status.last is not None
    assert status.last.event == "training.failed"
    assert "unreachable" in status.why


def test_a_candidate_failing_the_gates_is_not_deployed(open_project: Open) -> None:
    ws = open_project(params={"mode": "bad"})
    before = ws.deployments.get(DEPLOYMENT)
    fire(ws, "drift_share", 0.6, T0)
    steps = ws.training.run_once()
    assert _types(steps) == ["started", "candidate", "gated", "rejected"]
    gated, rejected = steps[2], steps[3]
    assert gated.payload["passed"] is False
    assert gated.payload["failures"]
    assert "FAILED" in gated.why
    assert rejected.payload["stage"] == "gates"
    assert "failed the gates" in rejected.why
    assert ws.deployments.get(DEPLOYMENT).revision == before.revision
    assert ws.registry.get(f"{MODEL}@production").version == 1


def test_a_challenger_that_does_not_win_stays_a_challenger(open_project: Open) -> None:
    ws = open_project()
    fire(ws, "drift_share", 0.6, T0)
    ws.training.run_once()
    _advance(ws, 1)
    _serve_trial(ws, candidate_better=False)
    [rejected] = ws.training.run_once()
    assert rejected.event == "training.rejected"
    assert rejected.payload["stage"] == "trial"
    assert "stays the challenger" in rejected.why
    assert "less than the margin of 5.0%" in rejected.why
    assert ws.registry.get(f"{MODEL}@production").version == 1
    assert ws.registry.get(f"{MODEL}@challenger").version == 2
    assert ws.deployments.get(DEPLOYMENT).policy == "single"
    ws.alerts.deliver()
    notices = [json.loads(line) for line in (ws.settings.home / NOTICES).read_text().splitlines()]
    assert [n["event"] for n in notices] == ["alert.fired", "training.rejected"]
    told = notices[1]
    assert told["alert_id"] == rejected.alert_id
    assert told["why"] == f"continuous training: {rejected.why}"
    assert told["training"]["stage"] == "trial"


def test_too_few_labelled_requests_wait_without_a_decision(open_project: Open) -> None:
    ws = open_project()
    fire(ws, "drift_share", 0.6, T0)
    ws.training.run_once()
    _advance(ws, 1)
    _serve_trial(ws, candidate_better=True, rows=60)
    assert ws.training.run_once() == []
    status = ws.training.status(DEPLOYMENT)
    assert status.phase == "trial"
    assert status.verdict is not None
    assert not status.verdict.decided
    assert status.why.startswith("waiting for labels: 60 of 100")
    assert ws.deployments.get(DEPLOYMENT).policy == "shadow"
    assert ws.registry.get(f"{MODEL}@production").version == 1


def test_an_alert_storm_starts_one_retrain_and_rate_limits_the_rest(open_project: Open) -> None:
    ws = open_project(on_alerts=["demand-drift", "demand-decay", "demand-skew"], rollback_on=[])
    ids = [
        *fire(ws, "drift_share", 0.6, T0),
        *fire(ws, "rmse", 3.0, T0),
        *fire(ws, "skew_share", 0.9, T0),
    ]
    steps = ws.training.run_once()
    assert _types(steps) == [
        "started", "candidate", "gated", "trial_started", "rate_limited", "rate_limited",
    ]  # fmt: skip
    assert [s.alert_id for s in steps if s.event == "training.rate_limited"] == ids[1:]
    assert "under way" in steps[-1].why
    _advance(ws, 1)
    _serve_trial(ws, candidate_better=False)
    ws.training.run_once()
    _advance(ws, 1)
    fire(ws, "drift_share", 0.1, T0 + timedelta(hours=2))  # resolves
    _advance(ws, 2)  # past the rule's cooldown: a new incident, not a flap
    [again] = fire(ws, "drift_share", 0.7, T0 + timedelta(hours=3))
    [limited] = ws.training.run_once()
    assert limited.event == "training.rate_limited"
    assert limited.alert_id == again
    assert "max_retrains = '1 per 6h' is used up" in limited.why
    assert len(ws.events(types=["training.started"])) == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_retrains": "often"}, "[training.demand] max_retrains = 'often' is not a rate"),
        ({"margin": "big"}, "[training.demand] margin = 'big' must be a number"),
        ({"trial": "blue-green"}, "trial = 'blue-green' is not one of shadow, canary"),
        ({"on_alerts": ["no-such-rule"]}, "names alert rule 'no-such-rule', which [alerts.rules]"),
        ({"rollback_on": ["typo"]}, "[training.demand] rollback_on = ['typo'] names alert rule"),
        ({"pipeline": "pipelines.py:nope"}, "pipeline = 'pipelines.py:nope': pipelines.py has no"),
        ({"pipeline": "missing.py:retrain"}, "pipeline = 'missing.py:retrain': no pipeline file"),
        ({"colour": "red"}, "[training.demand] has unknown key(s) colour"),
        ({"min_labelled": 0}, "min_labelled = 0 must be a whole number of at least 1"),
        ({"max_alert_age": "soon"}, "[training.demand] max_alert_age = 'soon' is not a duration"),
        ({"max_alert_age": "0s"}, "max_alert_age = '0s' lets no alert start a retrain"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_key(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    write_pipeline(tmp_path)
    with (
        Workspace.open(settings_for(tmp_path, policy(**overrides))) as ws,
        pytest.raises(ValidationFailed) as caught,
    ):
        _ = ws.training
    assert message in str(caught.value)


def test_a_policy_that_is_not_a_table_or_lacks_keys_is_refused(tmp_path: Path) -> None:
    write_pipeline(tmp_path)
    with (
        Workspace.open(settings_for(tmp_path, {"model": MODEL})) as ws,
        pytest.raises(ValidationFailed, match=r"\[training.demand\] needs 'pipeline'"),
    ):
        _ = ws.training
    settings = settings_for(tmp_path).model_copy(update={"training": {DEPLOYMENT: "x"}})
    with Workspace.open(settings) as ws, pytest.raises(ValidationFailed, match="must be a table"):
        _ = ws.training


def test_the_agent_pass_advances_the_loop(open_project: Open) -> None:
    ws = open_project()
    [alert_id] = fire(ws, "drift_share", 0.6, T0)
    assert ws.agent().run_once() == []
    started = ws.events(types=["training.trial_started"])
    assert [e.payload["alert_id"] for e in started] == [alert_id]
    history = ws.training.history(DEPLOYMENT)
    assert _types(history) == ["started", "candidate", "gated", "trial_started"]


def test_a_canary_is_promoted_by_a_welch_test_on_its_share(open_project: Open) -> None:
    ws = open_project(trial="canary", canary_share=0.2, min_labelled=40)
    fire(ws, "drift_share", 0.6, T0)
    ws.training.run_once()
    trial = ws.deployments.get(DEPLOYMENT)
    assert trial.policy == "canary"
    assert [(v.name, v.weight) for v in trial.variants] == [("primary", 80.0), ("canary", 20.0)]
    _advance(ws, 1)
    live = world(9, -1.0, 250)
    answer = np.where(
        np.arange(250) < 50,
        3 * live["x1"] - 2 * live["x2"],
        3 * live["x1"] + 2 * live["x2"],
    )
    ids = [f"c{i}" for i in range(250)]
    now = ws.clock.now()
    traffic(ws, ids=ids[:50], at=now, inputs=live[FEATURES].iloc[:50],
            variants=[("canary", 2, False, answer[:50])])  # fmt: skip
    traffic(ws, ids=ids[50:], at=now, inputs=live[FEATURES].iloc[50:],
            variants=[("primary", 1, False, answer[50:])])  # fmt: skip
    label(ws, ids, live["y"].to_numpy())
    [promoted] = ws.training.run_once()
    assert promoted.event == "training.promoted"
    verdict = promoted.payload["verdict"]
    assert verdict["test"] == "Welch t-test on squared errors"
    assert verdict["p_value"] < 0.05
    assert (verdict["labelled"], verdict["production_labelled"]) == (50, 200)
    assert ws.registry.get(f"{MODEL}@production").version == 2
    assert ws.deployments.get(DEPLOYMENT).policy == "single"


def test_a_pipeline_that_registers_no_version_fails_the_retrain(open_project: Open) -> None:
    ws = open_project(params={"mode": "nothing"})
    fire(ws, "drift_share", 0.6, T0)
    steps = ws.training.run_once()
    assert _types(steps) == ["started", "failed"]
    assert "registered no new version of 'demand'" in steps[1].why


def test_the_loop_runs_the_gates_when_the_pipeline_did_not(open_project: Open) -> None:
    ws = open_project(params={"mode": "register-only"})
    fire(ws, "drift_share", 0.6, T0)
    steps = ws.training.run_once()
    assert _types(steps) == ["started", "candidate", "gated", "rejected"]
    assert steps[2].why.startswith("the gates could not run: ")
    assert steps[2].payload["failures"] == ["evaluation"]


def test_an_interrupted_retrain_is_recorded_as_failed(open_project: Open) -> None:
    ws = open_project()
    ws.metadata.append_event(
        "training.started",
        subject=f"training:/{DEPLOYMENT}",
        actor="tester",
        time=T0,
        payload={"deployment": DEPLOYMENT, "alert_id": None, "attempt": "A1", "why": "test"},
    )
    assert ws.training.status(DEPLOYMENT).phase == "retraining"
    [failed] = ws.training.run_once()
    assert failed.event == "training.failed"
    assert "interrupted" in failed.why
    assert ws.training.status(DEPLOYMENT).phase == "idle"


def test_a_deployment_that_splits_traffic_cannot_start_a_trial(open_project: Open) -> None:
    ws = open_project()
    other = world(3, 1.0)
    ws.registry.register(MODEL, LinearRegression().fit(other[FEATURES], other["y"]))
    ws.deployments.deploy(DEPLOYMENT, model=f"{MODEL}@production", canary={f"{MODEL}/2": 10})
    fire(ws, "drift_share", 0.6, T0)
    steps = ws.training.run_once()
    assert _types(steps)[-1] == "failed"
    assert steps[-1].payload["stage"] == "trial"
    assert "answers with 2 variants" in steps[-1].why
    assert ws.deployments.get(DEPLOYMENT).policy == "canary"


def test_a_lock_held_by_another_process_makes_the_pass_wait(open_project: Open) -> None:
    ws = open_project()
    fire(ws, "drift_share", 0.6, T0)
    ws.metadata.take_lease(ws.training.consumer, holder="other", now=ws.clock.now(), ttl_s=60)
    assert ws.training.run_once() == []
    _advance(ws, 1 / 30)  # two minutes: the other holder's lease ran out
    assert _types(ws.training.run_once())[0] == "started"


def test_after_the_watch_a_rollback_alert_starts_a_retrain_instead(open_project: Open) -> None:
    ws = open_project()
    fire(ws, "drift_share", 0.6, T0)
    ws.training.run_once()
    _advance(ws, 1)
    _serve_trial(ws, candidate_better=True)
    [promoted] = ws.training.run_once()
    watched = ws.training.status(DEPLOYMENT).watch_until
    assert watched is not None
    assert watched.date() == (T0 + timedelta(days=2)).date()
    _advance(ws, 49)  # the watch of 2d is over
    assert ws.training.status(DEPLOYMENT).phase == "idle"
    fire(ws, "rmse", 2.5, T0 + timedelta(hours=50))
    steps = ws.training.run_once()
    assert _types(steps)[0] == "started"
    assert ws.registry.get(f"{MODEL}@production").version == 2
    assert promoted.event == "training.promoted"


def test_a_trial_whose_metric_cannot_be_computed_ends_as_failed(open_project: Open) -> None:
    ws = open_project()
    fire(ws, "drift_share", 0.6, T0)
    ws.training.run_once()
    live = world(5, -1.0, 120)
    ids = [f"t{i}" for i in range(120)]
    traffic(ws, ids=ids, at=ws.clock.now(), inputs=live[FEATURES],
            variants=[("primary", 1, False, live["y"].to_numpy()),
                      ("shadow", 2, True, live["y"].to_numpy())])  # fmt: skip
    ws.feedback.record(DEPLOYMENT, [(i, "many") for i in ids])
    [failed] = ws.training.run_once()
    assert failed.event == "training.failed"
    assert failed.payload["stage"] == "trial"
    assert "its rmse cannot be computed" in failed.why
    assert ws.deployments.get(DEPLOYMENT).policy == "single"
    assert ws.registry.get(f"{MODEL}@production").version == 1


def test_a_model_the_pipeline_never_registered_fails_the_retrain(open_project: Open) -> None:
    ws = open_project(params={"mode": "nothing"}, model="ghost")
    fire(ws, "drift_share", 0.6, T0)
    assert _types(ws.training.run_once()) == ["started", "failed"]


def test_a_winner_refused_by_the_gates_at_promotion_is_rejected(open_project: Open) -> None:
    ws = open_project()
    fire(ws, "drift_share", 0.6, T0)
    ws.training.run_once()
    # Production moves during the trial to a model that knows the candidate's test rows by
    # heart, so the promotion's fresh gates find the candidate worse.
    rows = world(1, -1.0).iloc[300:]
    oracle = KNeighborsRegressor(n_neighbors=1).fit(rows[FEATURES], rows["y"])
    moved = ws.registry.register(MODEL, oracle, input_example=rows[FEATURES].head())
    ws.registry.promote(MODEL, moved.version, force=True, reason="a hotfix")
    _advance(ws, 1)
    _serve_trial(ws, candidate_better=True)
    [rejected] = ws.training.run_once()
    assert rejected.event == "training.rejected"
    assert rejected.payload["stage"] == "promotion"
    assert "won its trial but promotion was refused" in rejected.why
    assert ws.registry.get(f"{MODEL}@production").version == moved.version
    assert ws.deployments.get(DEPLOYMENT).policy == "single"


def test_an_alert_the_policy_does_not_name_starts_nothing(open_project: Open) -> None:
    ws = open_project()
    assert fire(ws, "skew_share", 0.9, T0)
    assert ws.training.run_once() == []
    assert ws.training.history(DEPLOYMENT) == []


def test_an_alert_older_than_max_alert_age_starts_no_retrain_on_the_first_pass(
    open_project: Open,
) -> None:
    ws = open_project()  # max_alert_age defaults to the rate limit's period, 6h
    assert ws.training.policies[DEPLOYMENT].max_alert_age == timedelta(hours=6)
    fire(ws, "drift_share", 0.6, T0)  # long before the loop first runs
    _advance(ws, 7)
    assert ws.training.run_once() == []  # the first pass reads it, but it is too old
    assert ws.training.history(DEPLOYMENT) == []
    fire(ws, "drift_share", 0.1, T0 + timedelta(hours=1))  # resolves
    _advance(ws, 25)  # past the rule's cooldown: a new incident
    [fresh] = fire(ws, "drift_share", 0.7, T0 + timedelta(hours=2))
    steps = ws.training.run_once()
    assert [(s.event, s.alert_id) for s in steps[:1]] == [("training.started", fresh)]


def test_a_longer_max_alert_age_lets_an_older_alert_start_a_retrain(open_project: Open) -> None:
    ws = open_project(max_alert_age="1d")
    [alert_id] = fire(ws, "drift_share", 0.6, T0)
    _advance(ws, 7)
    steps = ws.training.run_once()
    assert _types(steps)[:1] == ["started"]
    assert steps[0].alert_id == alert_id


def _promote_while_decay_fires(ws: Workspace) -> str:
    """The decay alert fires, starts a retrain whose shadow wins: promoted while still firing."""
    [decay_id] = fire(ws, "rmse", 2.5, T0)
    ws.training.run_once()
    _advance(ws, 1)
    _serve_trial(ws, candidate_better=True)
    [promoted] = ws.training.run_once()
    assert promoted.event == "training.promoted"
    assert ws.alerts.get(decay_id).state == "firing"
    return decay_id


def test_a_rollback_alert_still_firing_after_the_promotion_rolls_back_once(
    open_project: Open,
) -> None:
    ws = open_project()
    decay_id = _promote_while_decay_fires(ws)
    assert fire(ws, "rmse", 2.4, T0 + timedelta(minutes=30)) == []  # before the promotion
    assert ws.training.run_once() == []
    _advance(ws, 2)
    assert fire(ws, "rmse", 2.6, T0 + timedelta(hours=3)) == []  # held: no new alert.fired
    [rolled] = ws.training.run_once()
    assert rolled.event == "training.rolled_back"
    assert rolled.alert_id == decay_id
    assert rolled.payload["started_by"] == decay_id
    assert (rolled.version, rolled.payload["to_version"]) == (2, 1)
    assert rolled.payload["rule"] == "demand-decay"
    assert "still firing when version 2 was promoted" in rolled.why
    assert "window ending 2030-03-01 03:00 UTC" in rolled.why
    assert ws.registry.get(f"{MODEL}@production").version == 1
    assert ws.training.status(DEPLOYMENT).phase == "idle"
    fire(ws, "rmse", 2.7, T0 + timedelta(hours=4))
    assert ws.training.run_once() == []  # once per promotion
    assert [m.kind for m in ws.registry.history(MODEL, "production")][-2:] == [
        "promote",
        "rollback",
    ]


def test_a_rollback_alert_that_resolves_after_the_promotion_keeps_the_new_version(
    open_project: Open,
) -> None:
    ws = open_project()
    decay_id = _promote_while_decay_fires(ws)
    _advance(ws, 2)
    fire(ws, "rmse", 0.8, T0 + timedelta(hours=3))
    assert ws.alerts.get(decay_id).state == "resolved"
    assert ws.training.run_once() == []
    assert ws.registry.get(f"{MODEL}@production").version == 2
    assert ws.training.status(DEPLOYMENT).phase == "watching"
