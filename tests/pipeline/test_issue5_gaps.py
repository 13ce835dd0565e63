"""Lines of issue 5 no other test showed: the CLI on a Dask cluster, S3 for workers, durations.

Found by the audit in ``/work/wt/prompts/audit-5-6.md``: the command line's
``--executor dask://...`` (the issue's own example), worker processes writing
their outputs to an S3 artifact store, and ``pipelines show`` giving each
step's duration.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.pipeline import flows

from mlcycle.settings import S3Settings, Settings, StoreSettings
from mlcycle.store import PipelineStatus, StepStatus
from mlcycle.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]


def _mlcycle(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m mlcycle ARGS`` in ``home``, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "mlcycle", *args],
        cwd=home,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_the_cli_runs_a_pipeline_on_a_dask_cluster(
    home: Path, marks: str, dask_scheduler: str
) -> None:
    target = f"{flows.__file__}:simple"
    done = _mlcycle(
        home,
        *("pipelines", "run", target, "--param", f"marks={marks}", "--param", "rows=4"),
        *("--executor", dask_scheduler, "--json"),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "completed"
    assert [s["status"] for s in summary["steps"]] == ["completed"] * 3
    with Workspace.open(Settings(home=home)) as workspace:
        run = workspace.metadata.get_pipeline_run(summary["run_id"])  # type: ignore[attr-defined]
        assert run.executor == dask_scheduler
        assert run.params["rows"] == 4
        assert run.param_sources["rows"] == "cli"
    assert flows.counted(marks, "make") == 1  # it ran on a worker, once
    local = _mlcycle(home, "pipelines", "run", target, "-p", f"marks={marks}", "-p", "rows=4")
    assert local.returncode == 0, local.stderr
    assert "3 steps, 3 from the cache" in local.stdout  # same cache keys on every executor


@pytest.mark.slow
@pytest.mark.s3
def test_worker_processes_write_outputs_to_an_s3_artifact_store(
    home: Path, marks: str, s3_endpoint: str, s3_bucket: str
) -> None:
    settings = Settings(
        home=home,
        actor="tester",
        store=StoreSettings(
            artifacts_url=f"s3://{s3_bucket}/team",
            s3=S3Settings(endpoint_url=s3_endpoint, region="us-east-1"),
        ),
    )
    with Workspace.open(settings) as workspace:
        result = flows.diamond.run(
            workspace=workspace, marks=marks, rendezvous=True, executor="process:2"
        )
        assert result.status is PipelineStatus.COMPLETED
        joined = result.output("join")  # read back from the bucket
        assert isinstance(joined, dict)
        assert joined["rows"] == 8
        assert len(joined["pids"]) == 2  # two worker processes wrote to the bucket
        blobs = [
            step_run.outputs["return"].digest
            for step_run in result.steps.values()
            if step_run.outputs["return"].inline is None
        ]
        assert blobs  # the DataFrame of make at least
        assert all(workspace.artifacts.exists(digest) for digest in blobs)
        again = flows.diamond.run(
            workspace=workspace, marks=marks, rendezvous=True, executor="process:2"
        )
        assert {s.status for s in again.steps.values()} == {StepStatus.CACHED}
    local = settings.workspace_dir / "artifacts"
    assert not local.exists() or not any(p.is_file() for p in local.rglob("*"))


def test_pipelines_show_gives_each_steps_status_and_duration(home: Path, marks: str) -> None:
    target = f"{flows.__file__}:simple"
    done = _mlcycle(home, "pipelines", "run", target, "-p", f"marks={marks}", "--json")
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    shown = _mlcycle(home, "pipelines", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    for name in ("make", "scale", "total"):
        line = next(line for line in shown.stdout.splitlines() if f" {name}" in line)
        assert "completed" in line or "✓" in line, shown.stdout
        assert re.search(r"\d+(\.\d)? (ms|s)\b", line), line
