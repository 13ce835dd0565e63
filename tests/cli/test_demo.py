"""``mlcycle demo``: three tracked models on the Bike Sharing data, in process and end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from mlcycle import Workspace
from mlcycle.settings import load_settings

Invoke = Callable[..., Result]


@pytest.mark.slow
def test_demo_tracks_three_models(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("demo")
    assert result.exit_code == 0, result.output
    assert "initialised an mlcycle project" in result.stdout
    assert (tmp_path / "mlcycle.toml").is_file()
    with Workspace.open(load_settings(tmp_path)) as workspace:
        runs = workspace.search_runs("bike-demand", order_by="metrics.rmse")
        assert list(runs["name"]) == ["gbm", "ridge", "baseline"]
        assert set(runs["status"]) == {"finished"}
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
    table = result.stdout[result.stdout.index("bike-demand: test set") :]
    gbm_line = next(line for line in table.splitlines() if "gbm" in line)
    assert gbm_line.count("★") == 3  # best rmse, mae and r2
    assert "mlcycle runs compare" in result.stdout


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
    rows = json.loads(listed.stdout)
    assert sorted(row["name"] for row in rows) == ["baseline", "gbm", "ridge"]
    table = mlcycle("runs", "list", "-e", "bike-demand", cwd=project)
    for row in rows:
        assert row["run_id"] in table.stdout
