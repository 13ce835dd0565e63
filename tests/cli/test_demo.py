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
def test_the_whole_loop_from_early_2011_to_a_retrained_model_in_production(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("demo", "--days", "35")
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "initialised an mlcycle project" in out
    assert "registered dataset bike/1: 2,067 rows before 2011-04-01, 18 columns" in out
    assert "task: regression of 'cnt'" in out
    assert "wrote schemas/bike.yaml: 18 columns" in out
    assert "validated bike/1 against schemas/bike.yaml: passed" in out
    schema = (tmp_path / "schemas" / "bike.yaml").read_text()
    assert schema.startswith(DEMO_SCHEMA_MARK + "\n# mlcycle schema for bike.")
    config = (tmp_path / "mlcycle.toml").read_text()
    for section in ("[alerts.rules.bike-demand-drift]", "[monitors.bike-demand]",
                    "[training.bike-demand]"):  # fmt: skip
        assert section in config
    with Workspace.open(load_settings(tmp_path)) as workspace:
        # The training period was registered at the end of March 2011, on the simulated clock.
        first, *later = workspace.data.history("bike")
        assert (first.rows, first.operation) == (2_067, "create")
        assert first.created_at.date() == date(2011, 3, 31)
        # The first pipeline run, with a child run per step: load, split, the models, gates.
        pipeline_run, *retrains = sorted(
            workspace.metadata.list_pipeline_runs(), key=lambda r: r.created_at
        )
        assert pipeline_run.pipeline == "mlcycle-demo"
        assert pipeline_run.status is PipelineStatus.COMPLETED
        assert pipeline_run.datasets == {"data": "data:/bike/1"}
        steps = workspace.metadata.list_step_runs(pipeline_run.id)
        assert [s.step for s in steps] == ["load", "split", *MODELS, "gates"]
        assert {s.status for s in steps} == {StepStatus.COMPLETED}
        runs = workspace.search_runs("mlcycle-demo", order_by="metrics.rmse")
        first_runs = runs[runs["params.dataset"] == "bike/1"]
        first_runs = first_runs[first_runs["name"].isin(MODELS)].reset_index(drop=True)
        assert list(first_runs["name"]) == ["gbm", "linear", "baseline"]
        assert first_runs["metrics.r2"].iloc[0] > 0.7  # gradient boosting learns the hours
        first_model = workspace.registry.get("bike-demand/3")
        assert first_model.run_id == first_runs["run_id"].iloc[0]
        inputs = [spec["name"] for spec in first_model.signature["inputs"]]
        assert "casual" not in inputs  # casual + registered == cnt: they leak the target
        assert "dteday" not in inputs  # the time column
        # Each labelled day joined the dataset as a new version, for retraining.
        assert [v.rows for v in later[:3]] == [2_067 + 24, 2_067 + 48, 2_067 + 72]
        # Every day went through the real server at noon; its labels came a day later.
        labelled = workspace.feedback.labelled("bike-demand").to_pylist()
        answered = [row for row in labelled if not row["shadow"]]
        assert len({row["time"].date() for row in answered}) == 35
        assert all(row["label"] is not None for row in answered)
        assert {round(row["label_delay_s"] / 86_400) for row in answered} == {1}
        # Drift fired an alert; the loop retrained on recent data, tried it as a shadow on the
        # same requests and promoted it.
        events = workspace.events(limit=100_000)
        kinds = [event.type for event in events]
        fired = [e for e in events if e.type == "alert.fired"]
        assert fired[0].payload["name"] == "bike-demand-drift"
        for kind in ("training.started", "training.candidate", "training.gated",
                     "training.trial_started", "training.promoted"):  # fmt: skip
            assert kind in kinds, kind
        started = next(e for e in events if e.type == "training.started")
        assert started.payload["alert_id"] == fired[0].payload["alert_id"]
        assert retrains
        assert all(r.pipeline == "mlcycle-demo" for r in retrains)
        production = workspace.registry.get("bike-demand@production")
        assert production.version > 3
        assert production.dataset_versions != ("data:/bike/1",)  # trained on recent data
        assert any(row["shadow"] and row["model_version"] == production.version for row in labelled)
        moves = workspace.registry.history("bike-demand")
        assert moves[0].to_version == 3
        assert any("training" in (move.reason or "") for move in moves[1:])
        # The monitors scored every day once its labels were in.
        results = workspace.monitor.results("bike-demand", metrics=["rmse", "drift_share"])
        assert results["window_start"].nunique() == 35
    assert "alert.fired: bike-demand-drift" in out
    assert "training.promoted: promoted version" in out
    assert "replaying 35 days from 2011-04-01" in out
    assert f"production is bike-demand/{production.version}, promoted by the training loop" in out
    url = out.split("serving it at ", 1)[1].split(";")[0]
    with pytest.raises(httpx.TransportError):  # the server stopped
        httpx.get(f"{url}/v2/health/live", timeout=5)
    page = (tmp_path / "demo-bike-demand.html").read_text()
    assert page.count("<svg") >= 3
    assert "training.promoted" in page  # the events timeline
    lineage = page.split("<h2>Lineage", 1)[1].split("</pre>", 1)[0]
    assert f"models:/bike-demand/{production.version}" in lineage
    assert f"{production.dataset_versions[0]} (training_data)" in lineage
    assert (tmp_path / ".mlcycle" / "demo-serve.log").is_file()
    # What happened is there for the commands the demo suggests.
    for command in (["alerts", "list"], ["models", "list"], ["runs", "list"],
                    ["training", "history", "bike-demand"]):  # fmt: skip
        shown = invoke(*command)
        assert shown.exit_code == 0, (command, shown.output)
    assert "bike-demand-drift" in invoke("alerts", "list").stdout
    reported = invoke("monitor", "report", "bike-demand", "--out", str(tmp_path / "report"))
    assert reported.exit_code == 0, reported.output
    assert (tmp_path / "report" / "monitor-bike-demand.html").is_file()


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
    done = invoke("demo", "--days", "2")
    assert done.exit_code == 0
    assert "Next, try:\n  mlcycle runs list" in done.stdout  # already in the project
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
    assert "Next, try:\n  cd ../..\n  mlcycle runs list" in demo.stdout  # to the project
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
