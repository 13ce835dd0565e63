"""``mlcycle demo``: three tracked models on the Bike Sharing data, in process and end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import Result

from mlcycle import Workspace
from mlcycle.cli._demo import DEMO_SCHEMA_MARK
from mlcycle.serve import read_predictions, spool_dir
from mlcycle.settings import load_settings
from mlcycle.store import PipelineStatus, StepStatus

Invoke = Callable[..., Result]
MODELS = ["baseline", "ridge", "gbm"]


@pytest.mark.slow
def test_demo_tracks_three_models(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("demo")
    assert result.exit_code == 0, result.output
    assert "initialised an mlcycle project" in result.stdout
    assert (tmp_path / "mlcycle.toml").is_file()
    assert "registered dataset bike/1: 17,379 rows, 17 columns" in result.stdout
    assert "wrote schemas/bike.yaml: 17 columns, key (dteday, hr)" in result.stdout
    assert "validated bike/1 against schemas/bike.yaml: passed" in result.stdout
    schema = (tmp_path / "schemas" / "bike.yaml").read_text()
    assert schema.startswith(DEMO_SCHEMA_MARK + "\n# mlcycle schema for bike.")
    with Workspace.open(load_settings(tmp_path)) as workspace:
        [version] = workspace.data.history("bike")
        assert (version.rows, version.operation) == (17_379, "create")
        assert workspace.data.catalog.get_dataset("bike").key == ("dteday", "hr")
        every = workspace.search_runs("bike-demand", order_by="metrics.rmse")
        assert set(every["status"]) == {"finished"}
        # The pipeline's run, with a child run per step: load, split, the models, gates.
        [pipeline_run] = workspace.metadata.list_pipeline_runs()
        assert pipeline_run.pipeline == "bike-demand"
        assert pipeline_run.status is PipelineStatus.COMPLETED
        assert pipeline_run.datasets == {"data": "data:/bike/1"}
        steps = workspace.metadata.list_step_runs(pipeline_run.id)
        assert [s.step for s in steps] == ["load", "split", *MODELS, "gates"]
        assert {s.status for s in steps} == {StepStatus.COMPLETED}
        assert len(every) == 1 + len(steps)
        runs = every[every["name"].isin(MODELS)].reset_index(drop=True)
        assert list(runs["name"]) == ["gbm", "ridge", "baseline"]
        rmse = list(runs["metrics.rmse"])
        assert rmse[0] < rmse[1] < rmse[2]
        assert list(runs["params.model"]) == ["gbm", "ridge", "mean"]
        assert runs["metrics.r2"].iloc[0] > 0.8  # gradient boosting learns the hourly pattern
        gbm = workspace.get_run(runs["run_id"].iloc[0])
        assert gbm.seed == 42
        curve = gbm.metric_history("rmse_by_iteration")
        assert [point.step for point in curve] == list(range(10, 301, 10))
        assert curve[-1].value == pytest.approx(rmse[0])
        names = {a.name for a in workspace.metadata.list_artifacts(gbm.id)}
        assert names == {"predictions_sample", "report"}
        assert gbm.tags["mlcycle.split"]  # the gates read it back
        # Each run's model is a version of bike-demand; the gates judged each one.
        versions = {v.run_id: v for v in workspace.registry.versions("bike-demand")}
        assert set(versions) == set(runs["run_id"])
        by_name = {row["name"]: versions[row["run_id"]] for _, row in runs.iterrows()}
        for name, version in by_name.items():
            assert version.dataset_versions == ("data:/bike/1",)
            assert version.evaluation is not None
            assert version.evaluation["passed"] is (name != "baseline"), name
        failed = [r["name"] for r in by_name["baseline"].evaluation["results"] if not r["passed"]]
        assert failed == ["beats_baseline"]
        production = workspace.registry.get("models:/bike-demand@production")
        assert production == by_name["gbm"]
        assert production.tags["algo"] == "gbm"
        assert production.tags["mlcycle.onnx"].startswith("converted")
        [move] = workspace.registry.history("bike-demand")
        assert (move.to_version, move.kind, move.forced) == (production.version, "promote", False)
        assert "lowest test rmse" in (move.reason or "")
        chain = "\n".join(workspace.lineage(production.ref).lines())
        assert f"run:{gbm.id}" in chain
        assert "data:/bike/1" in chain
        for run_id in runs["run_id"]:  # each run trained on the recorded dataset version
            inputs = {(p.ref, p.kind) for p in workspace.lineage(f"run:{run_id}").parents}
            assert ("data:/bike/1", "input") in inputs
        assert set(runs["params.dataset"]) == {"bike/1"}
        assert set(runs["params.train_rows"]) == {"14491"}  # hours before 2012-09-01
    table = result.stdout[result.stdout.index("bike-demand: test set") :]
    gbm_line = next(line for line in table.splitlines() if "gbm" in line)
    assert gbm_line.count("★") == 3  # best rmse, mae and r2
    assert "mlcycle runs compare" in result.stdout
    assert f"ran pipeline bike-demand as run {pipeline_run.id}: 0 of 6 steps" in result.stdout
    assert f"mlcycle pipelines show {pipeline_run.id}" in result.stdout
    assert "mlcycle data show bike" in result.stdout
    assert f"mlcycle runs show {gbm.id}" in result.stdout
    assert "gates failed: baseline (beats_baseline)" in result.stdout
    assert "promoted bike-demand/3 (gbm) to production" in result.stdout
    assert "mlcycle models lineage models:/bike-demand@production" in result.stdout
    # The demo served production in a real server and replayed the test months against it.
    served = " ".join(result.stdout[result.stdout.index("served bike-demand/3") :].split())
    url = served.split(" at ", 1)[1].split()[0]
    assert url.startswith("http://127.0.0.1:")
    assert "replayed 2,888 hours from 2012-09-01 on as 58 requests of up to 50 rows" in served
    assert f"rmse {rmse[0]:.1f} against the true counts" in served  # served = trained model
    assert "the prediction log holds 2,888 of the 2,888 replayed predictions" in served
    with pytest.raises(httpx.TransportError):  # the server stopped
        httpx.get(f"{url}/v2/health/live", timeout=5)
    with Workspace.open(load_settings(tmp_path)) as workspace:
        logged = read_predictions(
            spool_dir=spool_dir(workspace.settings),
            tables=workspace.artifacts,  # type: ignore[arg-type]  # a local store has tables
            deployment="bike-demand",
        )
    assert logged.num_rows == 2_888
    assert set(logged.column("model_version").to_pylist()) == {3}
    assert (tmp_path / ".mlcycle" / "demo-serve.log").is_file()


@pytest.mark.slow
def test_demo_twice_reuses_the_dataset_version_and_keeps_an_edited_schema(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke("demo").exit_code == 0
    again = invoke("demo")
    assert again.exit_code == 0, again.output
    assert "dataset bike/1 is up to date: 17,379 rows (no new version)" in again.stdout
    assert "schema schemas/bike.yaml is up to date" in again.stdout
    # Same data, same code: every step comes from the cache, nothing is trained or registered.
    assert ": 6 of 6 steps from the cache" in again.stdout
    assert "bike-demand/3 → production" in again.stdout
    assert "the gates step came from the cache, so production was left as it is" in again.stdout
    assert "to production: it passed every gate" not in again.stdout
    assert "the prediction log holds 2,888 of the 2,888 replayed predictions" in " ".join(
        again.stdout.split()
    )
    path = tmp_path / "schemas" / "bike.yaml"
    # Someone takes the file over (drops the demo's first line) and tightens a bound.
    owned = path.read_text().split("\n", 1)[1].replace("max: 1075", "max: 500")
    path.write_text(owned)
    refused = invoke("demo")
    assert refused.exit_code == 1
    assert "kept schemas/bike.yaml (edited or written by you" in refused.stdout
    assert "out_of_range" in refused.stdout
    assert refused.stderr.startswith("error: dataset bike/1 breaks")
    assert "no model was trained" in refused.stderr
    assert path.read_text() == owned
    with Workspace.open(load_settings(tmp_path)) as workspace:
        assert [v.version for v in workspace.data.history("bike")] == [1]
        first, second = sorted(workspace.metadata.list_pipeline_runs(), key=lambda r: r.created_at)
        cached = workspace.metadata.list_step_runs(second.id)
        assert {s.status for s in cached} == {StepStatus.CACHED}
        assert {s.cached_from for s in cached} == {first.id}
        names = list(workspace.search_runs("bike-demand")["name"])
        assert sorted(n for n in names if n in MODELS) == sorted(MODELS)  # trained once
        assert [v.version for v in workspace.registry.versions("bike-demand")] == [1, 2, 3]
        assert workspace.registry.get("bike-demand@production").version == 3
        assert [m.to_version for m in workspace.registry.history("bike-demand")] == [3]


@pytest.mark.slow
def test_init_demo_then_runs_list_in_real_processes(tmp_path: Path) -> None:
    def mlcycle(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlcycle", *args],
            cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    assert mlcycle("init", "bikes", cwd=tmp_path).returncode == 0
    project = tmp_path / "bikes"
    (project / "notebooks" / "deep").mkdir()
    demo = mlcycle("demo", cwd=project / "notebooks" / "deep")  # found by walking up
    assert demo.returncode == 0, demo.stderr
    assert not (project / "notebooks" / "deep" / "mlcycle.toml").exists()
    listed = mlcycle("runs", "list", "--json", cwd=project)
    assert listed.returncode == 0, listed.stderr
    rows = [row for row in json.loads(listed.stdout) if row["name"] in MODELS]
    assert sorted(row["name"] for row in rows) == ["baseline", "gbm", "ridge"]
    assert (project / "schemas" / "bike.yaml").is_file()  # in the project, not the cwd
    gbm = next(row["run_id"] for row in rows if row["name"] == "gbm")
    shown = mlcycle("runs", "show", gbm, cwd=project)
    assert "data:/bike/1 (input)" in shown.stdout
    validated = mlcycle("data", "validate", "bike", cwd=project)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    table = mlcycle("runs", "list", "-e", "bike-demand", cwd=project)
    for row in rows:
        assert row["run_id"] in table.stdout
