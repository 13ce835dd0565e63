"""Real processes: a SIGKILLed run keeps what it logged and is reaped; four writers share SQLite."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest

from mlcycle.clock import SimulatedClock
from mlcycle.settings import ClockSettings, load_settings
from mlcycle.store import RunStatus
from mlcycle.workspace import Workspace

CRASHING = textwrap.dedent(
    """
    import time
    import mlcycle as mc

    run = mc.start_run("crash", params={"lr": 0.1})
    for step in range(300):
        run.log_metric("loss", step / 7, step=step)
    run.set_tag("phase", "train")
    print(run.id, flush=True)
    time.sleep(120)
    """
)

WRITING = textwrap.dedent(
    """
    import sys
    import mlcycle as mc

    index = int(sys.argv[1])
    with mc.start_run("many", params={"process": index}) as run:
        for step in range(2000):
            run.log_metric("value", index * 10_000 + step, step=step)
    print(run.id, flush=True)
    """
)


def _environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("MLCYCLE_")}


@pytest.mark.slow
def test_sigkill_keeps_what_was_logged_and_the_run_is_reaped(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", CRASHING],
        cwd=tmp_path,
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            run_id = process.stdout.readline().strip()
            time.sleep(1.5)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(30)
    assert run_id
    assert process.returncode == -signal.SIGKILL
    settings = load_settings(tmp_path, clock=ClockSettings(mode="simulated"))
    with Workspace.open(settings) as workspace:
        before = workspace.metadata.get_run(run_id)
        assert before.status is RunStatus.RUNNING
        history = workspace.metadata.metric_history(before.id, "loss")
        assert [point.value for point in history] == [step / 7 for step in range(300)]
        assert before.params == {"lr": "0.1"}
        assert before.tags["phase"] == "train"
        SimulatedClock(settings.clock_state_file).advance(
            timedelta(seconds=settings.tracking.stale_after_s + 1)
        )
        frame = workspace.search_runs("crash")
        assert frame["status"].tolist() == ["killed"]
        after = workspace.get_run(run_id)
        assert after.status is RunStatus.KILLED
        assert len(after.metric_history("loss")) == 300
        assert after.metrics["loss"] == 299 / 7
        assert [event.type for event in workspace.events(types=["run.killed"])] == ["run.killed"]


@pytest.mark.slow
def test_four_processes_share_one_sqlite_file(tmp_path: Path) -> None:
    Workspace.find(tmp_path).close()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITING, str(index)],
            cwd=tmp_path,
            env=_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(4)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
        assert "locked" not in err
    with sqlite3.connect(tmp_path / ".mlcycle" / "mlcycle.db") as conn:
        assert conn.execute("SELECT sum(count) FROM metric_chunks").fetchone() == (8000,)
        assert conn.execute("SELECT count(DISTINCT run_id) FROM metric_chunks").fetchone() == (4,)
    with Workspace.find(tmp_path) as workspace:
        for out, _err in outputs:
            found = workspace.get_run(out.strip())
            index = int(found.params["process"])
            assert found.status is RunStatus.FINISHED
            values = [point.value for point in found.metric_history("value")]
            assert values == [float(index * 10_000 + step) for step in range(2000)]


OPEN_AT_EXIT = textwrap.dedent(
    """
    import sys
    import mlcycle as mc

    run = mc.start_run("exit")
    for step in range(1000):
        run.log_metric("loss", float(step), step=step)
    print(run.id, flush=True)
    if sys.argv[1] == "raise":
        raise ValueError("boom")
    if sys.argv[1] == "interrupt":
        raise KeyboardInterrupt
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "status", "error"),
    [
        ("normal", RunStatus.FINISHED, None),
        ("raise", RunStatus.FAILED, "ValueError"),
        ("interrupt", RunStatus.KILLED, "KeyboardInterrupt"),
    ],
)
def test_runs_left_open_are_ended_at_exit(
    tmp_path: Path, how: str, status: RunStatus, error: str | None
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", OPEN_AT_EXIT, how],
        cwd=tmp_path,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode == 0) == (how == "normal"), done.stderr
    with Workspace.find(tmp_path) as workspace:
        found = workspace.get_run(done.stdout.strip())
        assert found.status is status
        assert (found.error.type if found.error else None) == error
        assert len(found.metric_history("loss")) == 1000
