"""``mlcycle demo`` on the bundled Bike Sharing hours: train, serve and replay days for real."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import httpx
import pytest
from click.testing import Result

from mlcycle import Workspace
from mlcycle.cli._demo import DEMO_SCHEMA_MARK
from mlcycle.settings import load_settings
from mlcycle.store import PipelineStatus, StepStatus

Invoke = Callable[..., Result]
MODELS = ["baseline", "linear", "gbm"]


@pytest.mark.slow
def test_demo_trains_on_early_2011_and_replays_later_days(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("demo", "--days", "3")
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "initialised an mlcycle project" in out
    assert "registered dataset bike/1: 2,067 rows before 2011-04-01, 18 columns" in out
    assert "task: regression of 'cnt'" in out
    assert "wrote schemas/bike.yaml: 18 columns" in out
    assert "validated bike/1 against schemas/bike.yaml: passed" in out
    schema = (tmp_path / "schemas" / "bike.yaml").read_text()
    assert schema.startswith(DEMO_SCHEMA_MARK + "\n# mlcycle schema for bike.")
    with Workspace.open(load_settings(tmp_path)) as workspace:
        # The training period was registered at the end of March 2011, on the simulated clock.
        first, *later = workspace.data.history("bike")
        assert (first.rows, first.operation) == (2_067, "create")
        assert first.created_at.date() == date(2011, 3, 31)
        # The pipeline's run, with a child run per step: load, split, the models, gates.
        [pipeline_run] = workspace.metadata.list_pipeline_runs()
        assert pipeline_run.pipeline == "mlcycle-demo"
        assert pipeline_run.status is PipelineStatus.COMPLETED
        assert pipeline_run.datasets == {"data": "data:/bike/1"}
        steps = workspace.metadata.list_step_runs(pipeline_run.id)
        assert [s.step for s in steps] == ["load", "split", *MODELS, "gates"]
        assert {s.status for s in steps} == {StepStatus.COMPLETED}
        runs = workspace.search_runs("mlcycle-demo", order_by="metrics.rmse")
        runs = runs[runs["name"].isin(MODELS)].reset_index(drop=True)
        assert list(runs["name"]) == ["gbm", "linear", "baseline"]
        assert runs["metrics.r2"].iloc[0] > 0.7  # gradient boosting learns the hourly pattern
        versions = {v.run_id: v for v in workspace.registry.versions("bike-demand")}
        by_name = {row["name"]: versions[row["run_id"]] for _, row in runs.iterrows()}
        for name, version in by_name.items():
            assert version.dataset_versions == ("data:/bike/1",)
            assert version.evaluation is not None
            assert version.evaluation["passed"] is (name != "baseline"), name
        production = workspace.registry.get("models:/bike-demand@production")
        assert production == by_name["gbm"]
        inputs = [spec["name"] for spec in production.signature["inputs"]]
        assert "casual" not in inputs  # casual + registered == cnt: they leak the target
        assert "dteday" not in inputs  # the time column
        assert "data:/bike/1" in "\n".join(workspace.lineage(production.ref).lines())
        # Three days through the real server: predictions at noon, labels a day later.
        [deployment] = workspace.deployments.list()
        assert deployment.name == "bike-demand"
        labelled = workspace.feedback.labelled("bike-demand").to_pylist()
        assert len(labelled) == 72
        days = sorted({row["time"].date() for row in labelled})
        assert days == [date(2011, 4, 1), date(2011, 4, 2), date(2011, 4, 3)]
        assert {row["model_version"] for row in labelled} == {production.version}
        assert all(row["label"] is not None for row in labelled)
        assert {round(row["label_delay_s"] / 86_400) for row in labelled} == {1}
        # Each labelled day joined the dataset as a new version, for retraining.
        assert [v.rows for v in later] == [2_067 + 24, 2_067 + 48, 2_067 + 72]
    assert f"promoted bike-demand/{production.version} to production" in out
    assert "replaying 3 days from 2011-04-01" in out
    assert "served 72 rows over 3 days; production's daily rmse" in out
    url = out.split("serving it at ", 1)[1].split(";")[0]
    with pytest.raises(httpx.TransportError):  # the server stopped
        httpx.get(f"{url}/v2/health/live", timeout=5)
    page = (tmp_path / "demo-bike-demand.html").read_text()
    assert "<svg" in page
    assert "model.alias_moved" in page  # the events timeline
    assert "data:/bike/1" in page  # the lineage
    assert "mlcycle monitor report bike-demand" in out
    assert (tmp_path / ".mlcycle" / "demo-serve.log").is_file()


@pytest.mark.slow
def test_a_second_demo_stops_before_writing_and_an_owned_schema_is_kept(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "schemas" / "bike.yaml"
    path.parent.mkdir()
    # The project's own schema (no demo line): a bound the hours of early 2011 break.
    path.write_text("version: 1\ndataset: bike\ncolumns:\n  cnt:\n    type: int64\n    max: 10\n")
    refused = invoke("demo", "--days", "2")
    assert refused.exit_code == 1
    assert "kept schemas/bike.yaml (edited or written by you" in refused.stdout
    assert refused.stderr.startswith("error: dataset bike/1 breaks")
    assert "no model was trained" in refused.stderr
    path.unlink()  # the project gives the file back: the demo infers a fresh one
    assert invoke("demo", "--days", "2").exit_code == 0
    with Workspace.open(load_settings(tmp_path)) as workspace:
        before = len(workspace.events(limit=10_000))
    again = invoke("demo", "--days", "2")
    assert again.exit_code == 1
    assert "already has deployment 'bike-demand' from an earlier `mlcycle demo`" in again.stderr
    with Workspace.open(load_settings(tmp_path)) as workspace:
        assert len(workspace.events(limit=10_000)) == before  # nothing was written


@pytest.mark.slow
def test_init_demo_then_runs_list_in_real_processes(tmp_path: Path) -> None:
    def mlcycle(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlcycle", *args],
            cwd=cwd, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip

    assert mlcycle("init", "bikes", cwd=tmp_path).returncode == 0
    project = tmp_path / "bikes"
    (project / "notebooks" / "deep").mkdir()
    demo = mlcycle("demo", "--days", "2", cwd=project / "notebooks" / "deep")  # found upward
    assert demo.returncode == 0, demo.stderr
    assert not (project / "notebooks" / "deep" / "mlcycle.toml").exists()
    assert (project / "demo-bike-demand.html").is_file()
    listed = mlcycle("runs", "list", "--json", cwd=project)
    assert listed.returncode == 0, listed.stderr
    rows = [row for row in json.loads(listed.stdout) if row["name"] in MODELS]
    assert sorted(row["name"] for row in rows) == sorted(MODELS)
    assert (project / "schemas" / "bike.yaml").is_file()  # in the project, not the cwd
    models = mlcycle("models", "list", cwd=project)
    assert "bike-demand" in models.stdout
    validated = mlcycle("data", "validate", "bike/1", cwd=project)
    assert validated.returncode == 0, validated.stdout + validated.stderr
