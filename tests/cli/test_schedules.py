"""``mlcycle schedules add|list|remove`` and ``mlcycle agent``: output, errors and exit codes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from tests.agent.conftest import TARGET_SCRIPT
from tests.cli.conftest import Invoke

from mlcycle import Workspace
from mlcycle.settings import Settings

pytestmark = pytest.mark.usefixtures("project")  # every command runs in a fresh project


def test_add_list_and_remove(invoke: Invoke) -> None:
    added = invoke(
        "schedules",
        "add",
        "nightly",
        "pipelines.py:training",
        "--cron",
        "0 2 * * *",
        "--param",
        "n_estimators=200",
        "--param",
        "depth=3",
    )
    assert added.exit_code == 0, added.output
    assert 'added schedule nightly: pipelines.py:training --cron "0 2 * * *"' in added.output
    assert invoke("schedules", "add", "retrain", "p.py:t", "--on-dataset", "bike").exit_code == 0
    assert invoke("schedules", "add", "fix", "p.py:t", "--on-alert", "latency-high").exit_code == 0
    listed = json.loads(invoke("schedules", "list", "--json").output)
    assert [(s["name"], s["kind"], s["spec"]) for s in listed] == [
        ("fix", "alert", "latency-high"),
        ("nightly", "cron", "0 2 * * *"),
        ("retrain", "dataset", "bike"),
    ]
    assert listed[1]["params"] == {"depth": "3", "n_estimators": "200"}
    table = invoke("schedules", "list").output
    assert "nightly" in table
    assert "--on-dataset bike" in table
    removed = invoke("schedules", "remove", "nightly")
    assert (removed.exit_code, removed.output.strip()) == (0, "removed schedule nightly")
    assert len(json.loads(invoke("schedules", "list", "--json").output)) == 2


def test_an_empty_list_says_how_to_add(invoke: Invoke) -> None:
    assert "no schedules yet" in invoke("schedules", "list").output


def test_a_bad_cron_points_at_the_field_and_stores_nothing(invoke: Invoke) -> None:
    result = invoke("schedules", "add", "nightly", "p.py:t", "--cron", "0 25 * * *")
    assert result.exit_code == 1
    assert (
        "error: cron expression '0 25 * * *': field 2 (hour) '25' is out of range 0-23"
        in result.output
    )
    assert "    ^^" in result.output
    assert json.loads(invoke("schedules", "list", "--json").output) == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--cron", "@daily", "--on-alert", "x"], 1, "exactly one trigger"),
        ([], 1, "exactly one trigger"),
        (["--cron", "@daily", "--param", "novalue"], 1, "--param 'novalue' must be NAME=VALUE"),
        (["--every", "5m"], 2, "No such option"),
    ],
)
def test_bad_options_are_clear_errors(
    invoke: Invoke, args: list[str], code: int, message: str
) -> None:
    result = invoke("schedules", "add", "nightly", "p.py:t", *args)
    assert result.exit_code == code
    assert message in result.output
    assert json.loads(invoke("schedules", "list", "--json").output) == []


def test_a_taken_name_and_an_unknown_schedule_are_errors(invoke: Invoke) -> None:
    invoke("schedules", "add", "nightly", "p.py:t", "--cron", "@daily")
    duplicate = invoke("schedules", "add", "nightly", "p.py:t", "--cron", "@hourly")
    assert duplicate.exit_code == 1
    assert "already a schedule 'nightly'" in duplicate.output
    missing = invoke("schedules", "remove", "nope")
    assert missing.exit_code == 1
    assert "no schedule 'nope'" in missing.output


def test_agent_once_launches_the_target_with_its_params(
    invoke: Invoke, project: Path, project_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = project / "target.py"
    script.write_text(TARGET_SCRIPT)
    launches = project / "launches.txt"
    monkeypatch.setenv(
        "MLCYCLE_AGENT__COMMAND", json.dumps([sys.executable, str(script), str(launches)])
    )
    invoke(
        "schedules", "add", "fix", "p.py:retrain", "--on-alert", "latency-high", "--param", "k=v"
    )
    with Workspace.open(project_settings) as ws:
        ws.metadata.append_event(
            "alert.fired",
            subject="latency-high",
            actor="monitor",
            time=ws.clock.now(),
            payload={"rule": "r", "severity": "critical", "value": 1.0},
        )
    result = invoke("agent", "--once")
    assert result.exit_code == 0, result.output
    assert "fired fix (event:" in result.output
    assert "p.py:retrain --param k=v -> exit 0" in result.output
    assert launches.read_text() == "p.py:retrain --param k=v\n"
    assert invoke("agent", "--once").output == ""


def test_the_default_command_runs_mlcycle_pipelines_run(project_settings: Settings) -> None:
    from mlcycle.agent import pipeline_command

    assert pipeline_command(project_settings) == (
        sys.executable,
        "-m",
        "mlcycle",
        "--home",
        str(project_settings.home),
        "pipelines",
        "run",
    )
    team = project_settings.model_copy(
        update={
            "store": project_settings.store.model_copy(
                update={"metadata_url": "postgresql://db/x", "artifacts_url": "s3://b/p"}
            )
        }
    )
    assert pipeline_command(team)[5:9] == (
        "--metadata-url",
        "postgresql://db/x",
        "--artifacts-url",
        "s3://b/p",
    )
    secret = team.model_copy(
        update={"store": team.store.model_copy(update={"metadata_url": "postgresql://u:pw@db/x"})}
    )
    assert "postgresql://u:pw@db/x" not in pipeline_command(secret)
