"""Executors: worker processes and a real Dask cluster give the same results and records."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from tests.pipeline import flows

from mlcycle.errors import BackendUnavailable, ValidationFailed
from mlcycle.pipeline import PipelineResult
from mlcycle.settings import Settings, StoreSettings
from mlcycle.store import PipelineStatus, RunStatus, StepStatus
from mlcycle.workspace import Workspace

pytestmark = pytest.mark.slow


def _digests(result: PipelineResult) -> dict[str, str]:
    return {name: s.outputs["return"].digest for name, s in result.steps.items()}


def _check_parallel(result: PipelineResult) -> None:
    assert result.status is PipelineStatus.COMPLETED
    assert {s.status for s in result.steps.values()} == {StepStatus.COMPLETED}
    joined = result.output("join")
    assert isinstance(joined, dict)
    assert joined["rows"] == 8
    assert len(joined["pids"]) == 2  # the branches ran at once, in two processes
    assert os.getpid() not in joined["pids"]


def test_the_process_executor_runs_branches_in_parallel(workspace: Workspace, marks: str) -> None:
    local = flows.simple.run(workspace=workspace, marks=marks)
    cached = flows.simple.run(workspace=workspace, marks=marks, executor="process:2")
    assert {s.status for s in cached.steps.values()} == {StepStatus.CACHED}  # same cache keys
    remote = flows.simple.run(workspace=workspace, marks=marks, executor="process:2", no_cache=True)
    assert remote.record.executor == "process:2"
    assert _digests(remote) == _digests(local)
    assert remote.output("total") == local.output("total")
    for step in remote.steps.values():
        child = workspace.get_run(step.run_id or "")
        assert child.parent_id == remote.record.run_id
        assert child.status is RunStatus.FINISHED  # the workers wrote their runs' ends on exit
    _check_parallel(
        flows.diamond.run(workspace=workspace, marks=marks, rendezvous=True, executor="process:2")
    )


def test_a_failing_step_on_workers_fails_the_run(workspace: Workspace, marks: str) -> None:
    with pytest.raises(Exception, match="gate is closed") as caught:
        flows.gated.run(workspace=workspace, marks=marks, executor="process:2")
    run = workspace.metadata.get_pipeline_run(caught.value.run_id)  # type: ignore[attr-defined]
    assert run.status is PipelineStatus.FAILED


def test_an_unknown_executor_is_refused_before_anything_runs(
    workspace: Workspace, marks: str
) -> None:
    with pytest.raises(ValidationFailed, match=r"unknown executor 'spark://x'; the executors are"):
        flows.simple.run(workspace=workspace, marks=marks, executor="spark://x")
    with pytest.raises(ValidationFailed, match="process:N"):
        flows.simple.run(workspace=workspace, marks=marks, executor="process:zero")
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="cannot reach the Dask scheduler"):
        flows.simple.run(workspace=workspace, marks=marks, executor="dask://127.0.0.1:9")
    assert time.monotonic() - started < 30  # a generous guard: the timeout is 5 s
    assert workspace.metadata.list_pipeline_runs() == []  # type: ignore[attr-defined]
    assert workspace.search_runs().empty


def test_the_dask_executor_gives_the_same_results_and_records(
    workspace: Workspace, marks: str, dask_scheduler: str
) -> None:
    local = flows.simple.run(workspace=workspace, marks=marks)
    remote = flows.simple.run(
        workspace=workspace, marks=marks, executor=dask_scheduler, no_cache=True
    )
    assert remote.record.executor == dask_scheduler
    assert _digests(remote) == _digests(local)
    assert [s.step for s in workspace.metadata.list_step_runs(remote.id)] == [  # type: ignore[attr-defined]
        "make",
        "scale",
        "total",
    ]
    cached = flows.simple.run(workspace=workspace, marks=marks, executor=dask_scheduler)
    assert {s.status for s in cached.steps.values()} == {StepStatus.CACHED}
    _check_parallel(
        flows.diamond.run(
            workspace=workspace, marks=marks, rendezvous=True, executor=dask_scheduler
        )
    )


@pytest.mark.postgres
def test_workers_share_a_postgresql_metadata_store(
    home: Path, marks: str, postgres_url: str
) -> None:
    settings = Settings(home=home, actor="tester", store=StoreSettings(metadata_url=postgres_url))
    with Workspace.open(settings) as workspace:
        result = flows.diamond.run(
            workspace=workspace, marks=marks, rendezvous=True, executor="process:2"
        )
        _check_parallel(result)
        steps = workspace.metadata.list_step_runs(result.id)  # type: ignore[attr-defined]
        assert [s.status for s in steps] == [StepStatus.COMPLETED] * 4


def test_a_run_failed_on_dask_resumes_on_dask_with_models(
    workspace: Workspace, marks: str, dask_scheduler: str
) -> None:
    with pytest.raises(Exception, match="gate is closed") as caught:
        flows.gated.run(workspace=workspace, marks=marks, executor=dask_scheduler)
    (Path(marks) / "allow").touch()
    resumed = flows.gated.resume(caught.value.run_id, workspace=workspace)  # type: ignore[attr-defined]
    assert resumed.status is PipelineStatus.COMPLETED
    assert resumed.record.executor == dask_scheduler
    assert (flows.counted(marks, "make"), flows.counted(marks, "gate")) == (1, 2)
    modeled = flows.modeling.run(workspace=workspace, marks=marks, executor=dask_scheduler)
    assert modeled.steps["fit"].outputs["return"].serializer == "model.sklearn"
    assert modeled.output("predict").shape == (20,)  # type: ignore[attr-defined]
