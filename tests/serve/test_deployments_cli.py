"""``mlcycle deploy`` and ``mlcycle deployments list|show|remove``: output, errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.serve.conftest import Invoke
from tests.serve.test_deployments import log_outputs, register_other_outputs
from tests.serve.test_logged_features import log_inputs, register_seasons

from mlcycle.settings import Settings
from mlcycle.workspace import Workspace

pytestmark = pytest.mark.usefixtures("bike_models")


def _stored(project: Path) -> list[str]:
    with Workspace.open(Settings(home=project)) as workspace:
        return [d.name for d in workspace.deployments.list()]


def test_deploy_list_show_and_remove(invoke: Invoke) -> None:
    result = invoke(
        "deploy", "bike-demand", "--model", "bike-demand@production",
        "--canary", "bike-demand/2=10", "--sticky-key", "station", "--key-columns", "station, hr",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "applied deployment bike-demand revision 1" in result.output
    assert "primary: bike-demand@production, 90% of traffic" in result.output
    assert "canary: bike-demand/2, 10% of traffic" in result.output
    shadow = invoke(
        "deploy", "bike-demand", "--model", "bike-demand@production", "--shadow", "bike-demand/3"
    )
    assert "revision 2" in shadow.output
    assert "shadow: bike-demand/3, shadow (gets copies, answers nobody)" in shadow.output
    [listed] = json.loads(invoke("deployments", "list", "--json").output)
    assert (listed["name"], listed["policy"], listed["revision"]) == ("bike-demand", "shadow", 2)
    assert listed["key_columns"] == []
    assert "bike-demand" in invoke("deployments", "list").output
    shown = json.loads(invoke("deployments", "show", "bike-demand", "--json").output)
    assert shown["variants"][1]["shadow"] is True
    assert "policy: shadow" in invoke("deployments", "show", "bike-demand").output
    removed = invoke("deployments", "remove", "bike-demand")
    assert removed.output.strip() == "removed deployment bike-demand (was revision 2)"
    assert "no deployments yet" in invoke("deployments", "list").output


def test_a_dry_run_shows_the_change_and_stores_nothing(invoke: Invoke, project: Path) -> None:
    result = invoke("deploy", "bike-demand", "--model", "bike-demand/1", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "+ bike-demand: create" in result.output
    assert "variant primary: - -> bike-demand/1 (100%)" in result.output
    assert "would apply 1 change(s)" in result.output
    assert _stored(project) == []


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["bike-demand", "--model", "bike-demand/9"], "cannot resolve model 'bike-demand/9'"),
        (["bike-demand", "--model", "nope@production"], "no model 'nope'"),
        (["bike-demand", "--model", "bike-demand/1", "--canary", "bike-demand/2"], "MODEL=PERCENT"),
        (["bike-demand", "--model", "bike-demand/1", "--canary", "bike-demand/2=x"], "PERCENT"),
        (
            ["bike-demand", "--model", "bike-demand/1", "--canary", "bike-demand/2=150"],
            "must add up to 100",
        ),
        (["bike-demand", "--model", "bike-demand/1", "--policy", "blue"], "--policy 'blue'"),
        (["bike-demand"], "give a NAME and --model"),
        (["--model", "bike-demand/1"], "give a NAME and --model"),
        (["bike-demand", "--model", "bike-demand/1", "--prune"], "--prune only applies"),
        (["bike-demand", "--from-toml"], "give no NAME"),
        (["--from-toml", "--key-columns", "hr"], "--key-columns with it"),
        (["--from-toml", "--sticky-key", "user"], "--sticky-key or --key-columns"),
        (["bad name", "--model", "bike-demand/1"], "deployment name 'bad name'"),
    ],
)
def test_bad_input_exits_1_and_stores_nothing(
    invoke: Invoke, project: Path, args: list[str], problem: str
) -> None:
    result = invoke("deploy", *args)
    assert result.exit_code == 1
    assert problem in result.output
    assert _stored(project) == []


def test_unknown_deployments_exit_1_naming_the_known(invoke: Invoke) -> None:
    invoke("deploy", "bike-demand", "--model", "bike-demand/1")
    for command in (["show", "bike"], ["remove", "bike"]):
        result = invoke("deployments", *command)
        assert result.exit_code == 1
        assert "no deployment 'bike' (known: bike-demand)" in result.output


TOML = """
[deployments.bike-demand]
policy = "shadow"
key_columns = ["station", "hr"]
variants = [
  { name = "primary", model = "bike-demand@production" },
  { name = "shadow", model = "bike-demand/3", shadow = true },
]
"""


def test_from_toml_shows_the_diff_and_applies_it(invoke: Invoke, project: Path) -> None:
    invoke("deploy", "legacy", "--model", "bike-demand/1")
    assert "no [deployments.NAME] tables" in invoke("deploy", "--from-toml").output
    config = project / "mlcycle.toml"
    config.write_text(config.read_text() + TOML)
    planned = invoke("deploy", "--from-toml", "--dry-run")
    assert planned.exit_code == 0, planned.output
    assert "+ bike-demand: create" in planned.output
    assert "variant shadow: - -> bike-demand/3 (shadow)" in planned.output
    assert "? legacy: extra (applied, not in mlcycle.toml; --prune removes it)" in planned.output
    assert _stored(project) == ["legacy"]
    applied = invoke("deploy", "--from-toml", "--prune")
    assert "applied 2 change(s); 0 left as they are" in applied.output
    assert _stored(project) == ["bike-demand"]
    again = invoke("deploy", "--from-toml")
    assert "= bike-demand: unchanged" in again.output
    assert "applied 0 change(s); 1 left as they are" in again.output


def test_bad_toml_exits_1_and_stores_nothing(invoke: Invoke, project: Path) -> None:
    config = project / "mlcycle.toml"
    original = config.read_text()
    config.write_text(original + '\n[deployments.bike-demand]\nmodel = "bike-demand/1"\nweight=\n')
    result = invoke("deploy", "--from-toml")
    assert result.exit_code == 1
    assert "is not valid TOML" in result.output
    config.write_text(original + '\n[deployments.bike-demand]\nmodel = "bike-demand/1"\nsize = 3\n')
    result = invoke("deploy", "--from-toml")
    assert result.exit_code == 1
    assert "[deployments.bike-demand] in mlcycle.toml: unknown key size" in result.output
    config.write_text(original + '\n[deployments.bike-demand]\nmodel = "bike-demand/5"\n')
    result = invoke("deploy", "--from-toml")
    assert result.exit_code == 1
    assert "cannot resolve model 'bike-demand/5'" in result.output
    config.write_text(original)
    assert _stored(project) == []


def test_a_model_of_another_kind_than_the_log_holds_exits_1(
    invoke: Invoke, project: Path, hours: pd.DataFrame
) -> None:
    invoke("deploy", "bike-demand", "--model", "bike-demand/1")
    with Workspace.open(Settings(home=project)) as workspace:
        register_other_outputs(workspace, hours)
        log = workspace.prediction_log()
        log_outputs(log, "bike-demand", np.array([3.0]))
        log.close()
    result = invoke("deploy", "bike-demand", "--model", "bike-busy/1")
    assert result.exit_code == 1
    assert (
        "variant primary (bike-busy/1) predicts one string a row, but the deployment's "
        "prediction log holds one number a row"
    ) in " ".join(result.output.split())
    shown = json.loads(invoke("deployments", "show", "bike-demand", "--json").output)
    assert (shown["revision"], shown["variants"][0]["model"]) == (1, "bike-demand/1")


def test_a_model_taking_a_feature_as_another_kind_than_the_log_holds_exits_1(
    invoke: Invoke, project: Path, hours: pd.DataFrame
) -> None:
    with Workspace.open(Settings(home=project)) as workspace:
        register_seasons(workspace, hours)
        log = workspace.prediction_log()
        log_inputs(log, "seasons", {"season": np.array([2.0])})
        log.close()
    result = invoke("deploy", "seasons", "--model", "bike-season/2")
    assert result.exit_code == 1
    assert (
        "variant primary (bike-season/2) takes feature 'season' as a string, but the "
        "deployment's prediction log holds it as a number"
    ) in " ".join(result.output.split())
    assert _stored(project) == []
