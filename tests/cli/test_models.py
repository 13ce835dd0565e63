"""``mlcycle models``: list, show, promote, rollback, history and lineage, with exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from tests.cli.conftest import Invoke

from mlcycle.cli._models import EXIT_GATE_FAILED
from mlcycle.settings import Settings
from mlcycle.workspace import Workspace

FAILED = {"passed": False, "results": [{"name": "rmse", "passed": False, "value": 60.0}]}
PASSED = {"passed": True, "results": [{"name": "rmse", "passed": True, "value": 40.0}]}


@pytest.fixture
def models(project_settings: Settings) -> Settings:
    """Model ``bike`` with version 1 (gates passed) and 2 (gates failed)."""
    frame = pd.DataFrame({"temp": np.linspace(0, 1, 10), "hr": np.arange(10)})
    model = Ridge().fit(frame, frame["temp"] * 2)
    with Workspace.open(project_settings) as workspace:
        for evaluation in (PASSED, FAILED):
            version = workspace.registry.register(
                "bike", model, input_example=frame.head(3), metrics={"rmse": 41.2}
            )
            workspace.registry.catalog.update_model_version(
                "bike",
                version.version,
                actor="ci",
                time=workspace.clock.now(),
                evaluation=evaluation,
            )
    return project_settings


def test_list_show_and_history(models: Settings, invoke: Invoke) -> None:
    assert invoke("models", "promote", "bike", "1").exit_code == 0
    listed = invoke("models", "list")
    assert listed.exit_code == 0
    assert "bike" in listed.stdout
    assert "production -> 1" in listed.stdout
    as_json = json.loads(invoke("models", "list", "--json").stdout)
    assert as_json[0]["latest"] == 2
    assert as_json[0]["aliases"] == {"production": 1}
    shown = invoke("models", "show", "models:/bike@production")
    assert shown.exit_code == 0
    assert "models:/bike/1" in shown.stdout
    assert "temp:float64" in shown.stdout
    assert "rmse=41.2" in shown.stdout
    details = json.loads(invoke("models", "show", "bike/2", "--json").stdout)
    assert (details["version"], details["evaluation"]) == (2, FAILED)
    moves = json.loads(invoke("models", "history", "bike", "--json").stdout)
    assert [(m["kind"], m["to_version"]) for m in moves] == [("promote", 1)]
    table = invoke("models", "history", "bike", "--alias", "production")
    assert "promote" in table.stdout


def test_promote_refused_by_gates_prints_them(models: Settings, invoke: Invoke) -> None:
    refused = invoke("models", "promote", "bike", "2")
    assert refused.exit_code == EXIT_GATE_FAILED
    assert "models:/bike/2 cannot become 'production'" in refused.stderr
    assert "rmse" in refused.stderr
    assert "value=60.0" in refused.stderr
    unforced = invoke("models", "promote", "bike", "2", "--force")
    assert unforced.exit_code == 1
    assert "needs a reason" in unforced.stderr
    forced = invoke(
        "models", "promote", "bike", "2", "--force", "--reason", "ops approved", "--json"
    )
    assert forced.exit_code == 0
    move = json.loads(forced.stdout)
    assert (move["forced"], move["reason"], move["to_version"]) == (True, "ops approved", 2)


def test_promote_missing_version_and_rollback(models: Settings, invoke: Invoke) -> None:
    missing = invoke("models", "promote", "bike", "7")
    assert missing.exit_code == 1
    assert "model 'bike' has no version 7 (latest is 2)" in missing.stderr
    assert invoke("models", "promote", "bike", "1", "--to", "staging").exit_code == 0
    promoted = invoke("models", "promote", "bike", "2", "--to", "staging")
    assert "bike@staging: version 1 -> version 2 (promote)" in promoted.stdout
    back = invoke("models", "rollback", "bike", "--alias", "staging")
    assert back.exit_code == 0
    assert "version 2 -> version 1 (rollback)" in back.stdout
    again = invoke("models", "rollback", "bike", "--alias", "staging", "--json")
    assert again.exit_code == 1
    assert "no earlier version to roll back to" in again.stderr
    assert invoke("models", "history", "nope").exit_code == 1
    assert "no models yet" not in invoke("models", "list").stdout


def test_lineage_as_tree_and_json(models: Settings, invoke: Invoke) -> None:
    tree = invoke("models", "lineage", "bike/1")
    assert tree.exit_code == 0
    assert tree.stdout.startswith("models:/bike/1")
    data = json.loads(invoke("models", "lineage", "models:/bike@latest", "--json").stdout)
    assert data["ref"] == "models:/bike/2"


def test_empty_registry_and_alias_conflict_code(project_settings: Settings, invoke: Invoke) -> None:
    with Workspace.open(project_settings):
        pass
    assert "no models yet" in invoke("models", "list").stdout


def test_evaluate_runs_the_gates_on_the_recorded_split(
    project_settings: Settings, invoke: Invoke, tmp_path: Path
) -> None:
    from sklearn.dummy import DummyRegressor

    from mlcycle.datasets import BIKE_SHARING_HOURLY

    features = ["hr", "temp", "hum", "workingday"]
    with Workspace.open(project_settings) as workspace:
        workspace.data.register("bike", BIKE_SHARING_HOURLY, time_column="dteday")
        for model in (Ridge(), DummyRegressor()):
            with workspace.start_run("bike") as run:
                frame = workspace.data.load("bike/1")
                train, test = frame[frame["yr"] == 0], frame[frame["yr"] == 1]
                run.log_split("bike/1", train, test, time_column="dteday")
                model.fit(train[features], train["cnt"])
                workspace.registry.register("demand", model, input_example=test[features][:3])
    passed = invoke("models", "evaluate", "demand/1", "--target", "cnt")
    assert passed.exit_code == 0, passed.output
    assert "gates passed on 8,734 test rows" in passed.stdout  # 2012, read back by the split
    assert "beats_baseline" in passed.stdout
    failed = invoke("models", "evaluate", "demand/2", "--target", "cnt", "--json")
    assert failed.exit_code == EXIT_GATE_FAILED
    assert json.loads(failed.stdout)["passed"] is False
    rows = tmp_path / "rows.csv"
    pd.read_csv(BIKE_SHARING_HOURLY).tail(100).to_csv(rows, index=False)
    on_file = invoke("models", "evaluate", "demand/1", "--target", "cnt", "--data", str(rows))
    assert on_file.exit_code == 0, on_file.output
    assert "on 100 test rows" in on_file.stdout
    missing = invoke("models", "evaluate", "demand/1", "--data", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 1
    assert "no file" in missing.stderr
    no_target = invoke("models", "evaluate", "demand/1")
    assert no_target.exit_code == 1
    assert "label column" in no_target.stderr
