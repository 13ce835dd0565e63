"""Resume: a failed run or a run whose process was SIGKILLed runs only what did not complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.pipeline import flows
from tests.pipeline.flows import counted

from mlcycle.errors import ValidationFailed
from mlcycle.pipeline import load_target, reap_stale_pipelines, resume
from mlcycle.settings import load_settings
from mlcycle.store import PipelineStatus, RunStatus, StepStatus
from mlcycle.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]


def test_a_failed_run_resumes_from_the_failed_step(
    workspace: Workspace, marks: str, executor: str
) -> None:
    with pytest.raises(Exception, match="gate is closed") as caught:
        flows.gated.run(workspace=workspace, marks=marks, executor=executor)
    run_id = caught.value.run_id  # type: ignore[attr-defined]
    (Path(marks) / "allow").touch()
    resumed = flows.gated.resume(run_id, workspace=workspace)
    assert resumed.id == run_id
    assert resumed.record.executor == executor  # a resume runs where the run ran
    assert resumed.status is PipelineStatus.COMPLETED
    assert resumed.record.resumes == 1
    assert (counted(marks, "make"), counted(marks, "total"), counted(marks, "gate")) == (1, 1, 2)
    assert resumed.output("gate") == {"x": 10.0, "y": 20.0}
    events = workspace.events(types=["pipeline.started", "pipeline.failed", "pipeline.finished"])
    assert [e.type for e in events] == [
        "pipeline.started",
        "pipeline.failed",
        "pipeline.started",
        "pipeline.finished",
    ]
    again = resume(run_id, workspace=workspace)  # a completed run has nothing left to do
    assert again.status is PipelineStatus.COMPLETED
    assert counted(marks, "gate") == 2


def _write_flow(home: Path, message: str) -> None:
    (home / "flow.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            from mlcycle import pipeline, step

            @step
            def first(marks: str) -> int:
                return 1

            @step
            def second(value: int, marks: str) -> int:
                if not (Path(marks) / "allow").exists():
                    raise RuntimeError({message!r})
                return value + 1

            @pipeline
            def changing(marks: str) -> None:
                second(first(marks), marks)
            """
        )
    )


def _forget(home: Path) -> None:
    for name in [
        n for n, m in sys.modules.items() if str(getattr(m, "__file__", "")).startswith(str(home))
    ]:
        del sys.modules[name]


def test_a_resume_with_changed_code_is_refused_unless_accepted(
    workspace: Workspace, home: Path, marks: str
) -> None:
    _write_flow(home, "closed")
    found = load_target("flow.py:changing", root=home)
    with pytest.raises(Exception, match="closed") as caught:
        found.run(workspace=workspace, marks=marks)
    run_id = caught.value.run_id  # type: ignore[attr-defined]
    _forget(home)
    _write_flow(home, "still closed")
    (Path(marks) / "allow").touch()
    with pytest.raises(ValidationFailed, match=r"code of pipeline 'changing' changed.*second"):
        resume(run_id, workspace=workspace)
    resumed = resume(run_id, workspace=workspace, allow_changed_code=True)
    assert resumed.status is PipelineStatus.COMPLETED
    assert resumed.record.code_changed
    assert resumed.output("second") == 2


def test_a_running_run_cannot_be_resumed(workspace: Workspace, marks: str) -> None:
    from dataclasses import replace

    result = flows.simple.run(workspace=workspace, marks=marks)
    log = workspace.metadata
    log.update_pipeline_run(  # type: ignore[attr-defined]
        replace(result.record, status=PipelineStatus.RUNNING, heartbeat_at=workspace.clock.now())
    )
    with pytest.raises(ValidationFailed, match="still running"):
        resume(result.id, workspace=workspace)


@pytest.mark.slow
def test_a_sigkilled_run_is_marked_killed_and_resumes(home: Path, marks: str) -> None:
    config = home / "mlcycle.toml"
    config.write_text(
        config.read_text().replace(
            "[tracking]\n", "[tracking]\nheartbeat_interval_s = 0.2\nstale_after_s = 1.0\n", 1
        )
    )
    flow = Path(flows.__file__)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with (Path(marks) / "stderr.txt").open("wb") as errors:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlcycle",
                "pipelines",
                "run",
                f"{flow}:sleepy",
                "--param",
                f"marks={marks}",
            ],
            cwd=home,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    started = Path(marks) / "slow.started"
    deadline = time.monotonic() + 180  # a loaded 2-core machine starts the subprocess slowly
    while not started.exists():
        assert process.poll() is None, (Path(marks) / "stderr.txt").read_text()
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    with Workspace.open(load_settings(home)) as workspace:
        [run] = workspace.metadata.list_pipeline_runs()  # type: ignore[attr-defined]
        assert run.status is PipelineStatus.RUNNING
        deadline = time.monotonic() + 30
        while not reap_stale_pipelines(workspace):
            assert time.monotonic() < deadline, "the dead run was never reaped"
            time.sleep(0.2)
        killed = workspace.metadata.get_pipeline_run(run.id)  # type: ignore[attr-defined]
        assert killed.status is PipelineStatus.KILLED
        steps = {s.step: s for s in workspace.metadata.list_step_runs(run.id)}  # type: ignore[attr-defined]
        assert steps["make"].status is StepStatus.COMPLETED
        assert steps["slow"].status is StepStatus.KILLED
        deadline = time.monotonic() + 30
        while workspace.get_run(steps["slow"].run_id or "").status is not RunStatus.KILLED:
            assert time.monotonic() < deadline, "the step's tracking run was never reaped"
            time.sleep(0.2)
        assert [e.payload["status"] for e in workspace.events(types=["pipeline.failed"])] == [
            "killed"
        ]
    (Path(marks) / "fast").touch()
    done = subprocess.run(
        [sys.executable, "-m", "mlcycle", "pipelines", "resume", run.id, "--json"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"status": "completed"' in done.stdout
    assert (counted(marks, "make"), counted(marks, "slow")) == (1, 2)
