"""``mlcycle training status|history|run`` and the agent's pass: output, errors and exit codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.agent.training_project import (
    FEATURES,
    deploy_production,
    fire,
    label,
    traffic,
    world,
    write_pipeline,
)
from tests.cli.conftest import Invoke

from mlcycle import Workspace
from mlcycle.settings import load_settings

T0 = datetime(2030, 3, 1, tzinfo=UTC)

CONFIG = """
[alerts.rules.demand-drift]
when = "drift_share > 0.3"

[registry.gates.demand]
require_disjoint_test = false

[training.demand]
pipeline = "pipelines.py:retrain"
model = "demand"
on_alerts = ["demand-drift"]
min_labelled = 50
"""


def configure(project: Path, text: str = CONFIG) -> None:
    with (project / "mlcycle.toml").open("a") as stream:
        stream.write(text)


def test_status_history_and_the_agent_pass(project: Path, invoke: Invoke) -> None:
    configure(project)
    write_pipeline(project)
    with Workspace.open(load_settings(project)) as ws:
        deploy_production(ws)
    nothing = invoke("training", "history", "demand")
    assert nothing.output.strip() == "no training steps for demand yet"
    idle = invoke("training", "status")
    assert idle.exit_code == 0, idle.output
    assert "demand: idle" in idle.output
    assert "production version 1" in idle.output
    with Workspace.open(load_settings(project)) as ws:
        [alert_id] = fire(ws, "drift_share", 0.6, T0)
    agent = invoke("agent", "--once")
    assert agent.exit_code == 0, agent.output
    said = " ".join(agent.output.split())
    assert "training demand: version 2 deployed as a shadow of demand" in said
    trial = invoke("training", "status", "demand")
    assert "demand: trial" in trial.output
    assert "waiting for labels: 0 of 50" in " ".join(trial.output.split())
    [state] = json.loads(invoke("training", "status", "--json").output)
    assert (state["phase"], state["candidate"], state["alert_id"]) == ("trial", 2, alert_id)
    assert state["verdict"]["labelled"] == 0
    shown = invoke("training", "history", "demand")
    assert shown.exit_code == 0
    lines = shown.output.strip().splitlines()
    assert [line.split()[3] for line in lines if "[alert" in line] == [
        "started",
        "candidate",
        "gated",
        "trial_started",
    ]
    steps = json.loads(invoke("training", "history", "demand", "--json").output)
    assert {s["alert_id"] for s in steps} == {alert_id}
    again = invoke("training", "run")
    assert (again.exit_code, again.output.strip()) == (0, "nothing to do")
    with Workspace.open(load_settings(project)) as ws:
        live = world(11, -1.0, 60)
        ids = [f"q{i}" for i in range(60)]
        old = (3 * live["x1"] + 2 * live["x2"]).to_numpy()
        new = (3 * live["x1"] - 2 * live["x2"]).to_numpy()
        traffic(ws, ids=ids, at=ws.clock.now(), inputs=live[FEATURES],
                variants=[("primary", 1, False, old), ("shadow", 2, True, new)])  # fmt: skip
        label(ws, ids, live["y"].to_numpy())
    decided = invoke("training", "run")
    assert decided.exit_code == 0, decided.output
    assert "demand promoted v2 [alert" in decided.output
    watching = invoke("training", "status", "demand")
    assert "demand: watching" in watching.output
    assert "production version 2" in watching.output


def test_no_policies_and_unknown_deployments(project: Path, invoke: Invoke) -> None:
    empty = invoke("training", "status")
    assert (empty.exit_code, "no [training.NAME] policies" in empty.output) == (0, True)
    missing = invoke("training", "history", "taxi")
    assert missing.exit_code != 0
    assert "deployment 'taxi' has no training policy" in missing.output


def test_a_bad_policy_fails_the_command_naming_it(project: Path, invoke: Invoke) -> None:
    write_pipeline(project)
    configure(project, CONFIG.replace('on_alerts = ["demand-drift"]', 'on_alerts = ["nope"]'))
    result = invoke("training", "status")
    assert result.exit_code != 0
    said = " ".join(result.output.split())
    assert "[training.demand] on_alerts = ['nope'] names alert rule 'nope'" in said
    with_run = invoke("training", "run")
    assert with_run.exit_code != 0


def test_a_retrain_in_a_process_of_its_own(project: Path, invoke: Invoke) -> None:
    configure(project, CONFIG + 'launch = "process"\nparams = { mode = "good" }\n')
    write_pipeline(project)
    with Workspace.open(load_settings(project)) as ws:
        deploy_production(ws)
        fire(ws, "drift_share", 0.6, T0)
        steps = ws.training.run_once()
        assert [s.event.removeprefix("training.") for s in steps] == [
            "started",
            "candidate",
            "gated",
            "trial_started",
        ]
        assert steps[1].payload["ran"] == "`mlcycle pipelines run pipelines.py:retrain` (process)"
        assert ws.registry.get("demand/2").run_id is not None


def test_a_failing_retrain_process_is_recorded_with_its_output(
    project: Path, invoke: Invoke
) -> None:
    configure(project, CONFIG + 'launch = "process"\nparams = { mode = "fail" }\n')
    write_pipeline(project)
    with Workspace.open(load_settings(project)) as ws:
        deploy_production(ws)
        [alert_id] = fire(ws, "drift_share", 0.6, T0)
        _, failed = ws.training.run_once()
        assert failed.event == "training.failed"
        assert "exited with 1" in failed.why
        assert "the training data is unreachable" in failed.why
        assert ws.alerts.get(alert_id).state == "firing"
    shown = invoke("training", "status", "demand")
    assert "exited with 1" in " ".join(shown.output.split())


@pytest.mark.parametrize(
    ("agent", "problem"),
    [
        ('command = ["/no/such/mlcycle"]', "cannot start `mlcycle pipelines run"),
        ("launch_timeout_s = 0.001", "was killed after 0.001 s (agent.launch_timeout_s)"),
    ],
)
def test_a_retrain_process_that_cannot_run_fails_the_retrain(
    project: Path, agent: str, problem: str
) -> None:
    configure(project, CONFIG + f'launch = "process"\n\n[agent]\n{agent}\n')
    write_pipeline(project)
    with Workspace.open(load_settings(project)) as ws:
        deploy_production(ws)
        fire(ws, "drift_share", 0.6, T0)
        _, failed = ws.training.run_once()
        assert failed.event == "training.failed"
        assert problem in failed.why
        assert ws.registry.get("demand@production").version == 1
