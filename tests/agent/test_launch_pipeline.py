"""The agent end to end: a new dataset version launches a real pipeline run in a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mlcycle import Workspace
from mlcycle.pipeline import OUTPUT, load_output
from mlcycle.project import init_project
from mlcycle.settings import load_settings
from mlcycle.store import PipelineStatus, StepStatus

PIPELINE = """\
import pandas as pd

import mlcycle as mc
from mlcycle import pipeline, step
from mlcycle.data import DatasetRef


@step
def load(data: DatasetRef) -> pd.DataFrame:
    return mc.data.load(data)


@step
def total(frame: pd.DataFrame) -> int:
    return int(frame["count"].sum())


@pipeline
def training(data: DatasetRef = DatasetRef("bike@latest")) -> None:
    total(load(data))
"""


def _mlcycle(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCYCLE_")}
    return subprocess.run(
        [sys.executable, "-m", "mlcycle", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_a_new_dataset_version_runs_the_scheduled_pipeline(tmp_path: Path) -> None:
    project = init_project(tmp_path / "project")
    (project / "pipelines.py").write_text(PIPELINE)
    added = _mlcycle(
        "schedules", "add", "retrain", "pipelines.py:training", "--on-dataset", "bike", cwd=project
    )
    assert added.returncode == 0, added.stderr
    with Workspace.open(load_settings(project)) as workspace:
        frame = pd.DataFrame({"hour": [1, 2, 3], "count": [10, 12, 20]})
        version = workspace.data.register("bike", frame, validate=False)
    agent = _mlcycle("agent", "--once", cwd=project)
    assert agent.returncode == 0, agent.stdout + agent.stderr
    said = " ".join(agent.stdout.split())  # rich wraps the line at the terminal's width
    assert "fired retrain (event:" in said
    assert "pipelines run pipelines.py:training -> exit 0" in said
    with Workspace.open(load_settings(project)) as workspace:
        [fired] = workspace.events(types=["schedule.fired"])
        assert fired.payload["exit_code"] == 0
        assert fired.payload["event"] == {
            "type": "dataset.version_created",
            "subject": version.ref,
        }
        [run] = workspace.metadata.list_pipeline_runs()
        assert (run.pipeline, run.status) == ("training", PipelineStatus.COMPLETED)
        assert run.datasets == {"data": "data:/bike/1"}
        steps = workspace.metadata.list_step_runs(run.id)
        assert [(s.step, s.status) for s in steps] == [
            ("load", StepStatus.COMPLETED),
            ("total", StepStatus.COMPLETED),
        ]
        total = load_output(
            steps[1].outputs[OUTPUT],
            what="the total",
            artifacts=workspace.artifacts,
            settings=workspace.settings,
            trust=False,
        )
        assert total == 42
    again = _mlcycle("agent", "--once", cwd=project)
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""  # the event was handled: nothing fires twice
