"""What a pipeline run records, retries with backoff, failures, and the cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from tests.pipeline import flows
from tests.pipeline.flows import counted

from mlcycle.errors import PipelineFailed
from mlcycle.pipeline import load_target
from mlcycle.store import PipelineStatus, RunStatus, StepStatus
from mlcycle.workspace import Workspace


def test_each_step_is_recorded_inside_a_child_tracking_run(
    workspace: Workspace, marks: str, executor: str
) -> None:
    result = flows.simple.run(workspace=workspace, marks=marks, rows=4, executor=executor)
    assert result.status is PipelineStatus.COMPLETED
    assert result.record.executor == executor
    log = workspace.metadata
    stored = log.get_pipeline_run(result.id)  # type: ignore[attr-defined]
    assert stored == result.record
    steps = log.list_step_runs(result.id)  # type: ignore[attr-defined]
    assert [(s.step, s.status, s.upstream) for s in steps] == [
        ("make", StepStatus.COMPLETED, ()),
        ("scale", StepStatus.COMPLETED, ("make",)),
        ("total", StepStatus.COMPLETED, ("scale",)),
    ]
    make, scale, _total = steps
    assert scale.inputs == {"df": make.outputs["return"].digest}
    assert scale.params == {"factor": 2.0, "marks": marks}
    assert make.code_digest is not None
    assert make.code_digest != scale.code_digest
    assert all(s.duration_s is not None and s.duration_s >= 0 for s in steps)
    assert "making 4 rows" in make.logs
    assert "WARNING tests.flows: made 4 rows" in make.logs
    parent = workspace.get_run(result.record.run_id or "")
    assert parent.status is RunStatus.FINISHED
    for s in steps:
        child = workspace.get_run(s.run_id or "")
        assert child.parent_id == parent.id
        assert child.name == s.step
        assert child.tags["pipeline.run"] == result.id
    types = [e.type for e in workspace.events(types=["pipeline.started", "pipeline.finished"])]
    assert types == ["pipeline.started", "pipeline.finished"]
    assert result.output("total") == {"x": 12.0, "y": 24.0}


def test_logs_are_bounded(workspace: Workspace, executor: str) -> None:
    from mlcycle.pipeline import LOG_LIMIT

    result = flows.noisy.run(workspace=workspace, size=LOG_LIMIT + 500, executor=executor)
    logs = result.steps["chatty"].logs
    assert logs.startswith("xxx")  # what the step printed, wherever it ran
    assert len(logs) < LOG_LIMIT + 200
    assert "501 more characters of output not kept" in logs


def test_retries_back_off_then_succeed(workspace: Workspace, marks: str, executor: str) -> None:
    result = flows.retrying.run(workspace=workspace, marks=marks, executor=executor)
    flaky = result.steps["flaky"]
    assert flaky.status is StepStatus.COMPLETED
    assert flaky.attempts == 3
    assert "attempt 1 of step 'flaky' failed: ConnectionError" in flaky.logs
    assert "retrying in 0.01 s" in flaky.logs
    assert "retrying in 0.02 s" in flaky.logs


def test_a_failed_step_stops_the_run_and_names_what_to_resume(
    workspace: Workspace, marks: str, executor: str
) -> None:
    with pytest.raises(PipelineFailed) as caught:
        flows.gated.run(workspace=workspace, marks=marks, executor=executor)
    message = str(caught.value)
    assert "step 'gate' failed after 1 attempt: RuntimeError: the gate is closed" in message
    assert f"mlcycle pipelines resume {caught.value.run_id}" in message
    run = workspace.metadata.get_pipeline_run(caught.value.run_id)  # type: ignore[attr-defined]
    assert run.status is PipelineStatus.FAILED
    gate = workspace.metadata.list_step_runs(run.id)[-1]  # type: ignore[attr-defined]
    assert gate.status is StepStatus.FAILED
    assert "RuntimeError: the gate is closed" in gate.logs
    assert workspace.get_run(gate.run_id or "").status is RunStatus.FAILED
    assert workspace.get_run(run.run_id or "").status is RunStatus.FAILED
    failed = workspace.events(types=["pipeline.failed"])
    assert [e.payload["status"] for e in failed] == ["failed"]


def test_a_second_run_comes_from_the_cache(workspace: Workspace, marks: str, executor: str) -> None:
    first = flows.simple.run(workspace=workspace, marks=marks)
    second = flows.simple.run(workspace=workspace, marks=marks, executor=executor)
    assert {s.status for s in second.steps.values()} == {StepStatus.CACHED}
    assert second.steps["total"].cached_from == first.id
    assert second.steps["total"].outputs == first.steps["total"].outputs
    assert second.output("total") == first.output("total")
    assert counted(marks, "make") == 1
    changed = flows.simple.run(workspace=workspace, marks=marks, factor=3.0, executor=executor)
    statuses = {name: s.status for name, s in changed.steps.items()}
    assert statuses == {
        "make": StepStatus.CACHED,
        "scale": StepStatus.COMPLETED,
        "total": StepStatus.COMPLETED,
    }
    forced = flows.simple.run(workspace=workspace, marks=marks, no_cache=True, executor=executor)
    assert {s.status for s in forced.steps.values()} == {StepStatus.COMPLETED}
    assert counted(marks, "make") == 2


def test_a_step_with_cache_off_always_runs(workspace: Workspace, marks: str, executor: str) -> None:
    flows.uncached.run(workspace=workspace, marks=marks, executor=executor)
    again = flows.uncached.run(workspace=workspace, marks=marks, executor=executor)
    assert again.steps["now"].status is StepStatus.COMPLETED
    assert again.output("now") == 2
    assert counted(marks, "now") == 2


def test_new_data_misses_the_cache(workspace: Workspace, executor: str) -> None:
    workspace.data.register("bike", pd.DataFrame({"hour": [1]}), validate=False)
    flows.from_data.run(workspace=workspace, executor=executor)
    again = flows.from_data.run(workspace=workspace, executor=executor)
    assert again.steps["read"].status is StepStatus.CACHED
    workspace.data.register("bike", pd.DataFrame({"hour": [2]}), validate=False)
    fresh = flows.from_data.run(workspace=workspace, executor=executor)
    assert fresh.steps["read"].status is StepStatus.COMPLETED
    assert fresh.output("count_rows") == 2


def _project_pipeline(home: Path, helper_body: str) -> None:
    (home / "helpers.py").write_text(
        textwrap.dedent(
            f"""
            def bump(value: int) -> int:
                return {helper_body}
            """
        )
    )
    (home / "flow.py").write_text(
        textwrap.dedent(
            """
            import helpers
            from mlcycle import pipeline, step

            def inner(value: int) -> int:
                return helpers.bump(value)

            @step
            def compute(value: int) -> int:
                return inner(value)

            @pipeline
            def project(value: int = 1) -> None:
                compute(value)
            """
        )
    )


def test_a_change_in_a_helper_under_the_project_root_misses_the_cache(
    workspace: Workspace, home: Path
) -> None:
    import sys

    _project_pipeline(home, "value + 1")
    found = load_target(str(home / "flow.py") + ":project", root=home)
    assert found.run(workspace=workspace).output("compute") == 2
    assert found.run(workspace=workspace).steps["compute"].status is StepStatus.CACHED
    for name in [n for n, m in sys.modules.items() if "flow" in n or n == "helpers"]:
        if getattr(sys.modules[name], "__file__", "").startswith(str(home)):
            del sys.modules[name]
    _project_pipeline(home, "value + 10")
    changed = load_target("flow.py:project", root=home)
    result = changed.run(workspace=workspace)
    assert result.steps["compute"].status is StepStatus.COMPLETED
    assert result.output("compute") == 11


def test_none_parameters_are_recorded_but_not_sent_to_tracking(workspace: Workspace) -> None:
    from mlcycle.pipeline import pipeline, step

    @step
    def chain(i: int, previous: int | None = None) -> int:
        return i + (previous or 0)

    @pipeline
    def chained(start: int | None = None) -> None:
        chain(2, chain(1, start))

    result = chained.run(workspace=workspace)
    assert result.record.params == {"start": None}
    assert result.steps["chain"].params == {"i": 1, "previous": None}
    assert result.output("chain_2") == 3
    assert "previous" not in workspace.get_run(result.steps["chain"].run_id or "").params


def _run_simple(home: Path, marks: str, extra_path: Path | None = None) -> dict[str, str]:
    """``simple`` through the CLI in a new process; ``extra_path`` adds to its ``sys.path``."""
    repo = Path(__file__).resolve().parents[2]
    paths = [str(repo)] + ([str(extra_path)] if extra_path else [])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlcycle",
            "pipelines",
            "run",
            f"{flows.__file__}:simple",
            "--param",
            f"marks={marks}",
            "--json",
        ],
        cwd=home,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    steps: list[dict[str, str]] = json.loads(done.stdout)["steps"]
    return {s["step"]: s["status"] for s in steps}


def _installed(folder: Path, name: str, version: str) -> None:
    """A distribution ``name`` at ``version`` as ``importlib.metadata`` finds one in ``folder``."""
    for old in folder.glob(f"{name}-*.dist-info"):
        shutil.rmtree(old)
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


@pytest.mark.slow
def test_a_change_in_installed_package_versions_misses_the_cache(
    home: Path, marks: str, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    assert set(_run_simple(home, marks).values()) == {"completed"}
    assert set(_run_simple(home, marks).values()) == {"cached"}  # same environment: a hit
    _installed(site, "mlcycle_probe", "1.0")
    assert set(_run_simple(home, marks, site).values()) == {"completed"}  # a package added
    assert set(_run_simple(home, marks, site).values()) == {"cached"}
    _installed(site, "mlcycle_probe", "1.1")
    assert set(_run_simple(home, marks, site).values()) == {"completed"}  # a version changed
    assert counted(marks, "make") == 3
