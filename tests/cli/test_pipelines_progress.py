"""``mlcycle pipelines run`` shows each step's state while the run goes on (issue 5, CLI line).

A real ``mlcycle`` process writes to a pipe. Its second step waits for a file
the test creates only after it has read the first step's ``completed`` line
from that pipe, so the line must have been printed (and flushed) while the
run was still going; the waits are guards against hangs, not timings.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 180.0  # a loaded 2-core machine starts the subprocess slowly

FLOW = """
import time
from pathlib import Path
from mlcycle import pipeline, step

@step
def first(rows: int) -> list[int]:
    return list(range(rows))

@step
def second(values: list[int], gate: str) -> int:
    deadline = time.monotonic() + {guard}
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError("nobody opened the gate")
        time.sleep(0.02)
    return len(values)

@pipeline
def waiting(gate: str, rows: int = 3) -> None:
    second(first(rows), gate)
"""


def _lines(stream: object, into: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)
    into.put(None)


def _until(lines: queue.Queue[str | None], *words: str) -> list[str]:
    """The lines read up to and including the first one holding every word."""
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=HANG_GUARD_S)
        except queue.Empty:
            pytest.fail(f"no line with {words} after {seen}")
        if line is None:
            pytest.fail(f"the output ended without a line with {words}: {seen}")
        seen.append(line)
        if all(word in line for word in words):
            return seen


@pytest.mark.slow
def test_a_finished_step_is_printed_while_a_later_step_runs(project: Path) -> None:
    (project / "waiting.py").write_text(textwrap.dedent(FLOW.format(guard=HANG_GUARD_S)))
    gate = project / "gate"
    errors = (project / "stderr.txt").open("w")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "mlcycle", "pipelines", "run", "waiting.py:waiting"),
            *("--param", f"gate={gate}"),
        ],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    errors.close()
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True)
    reader.start()
    try:
        before = _until(lines, "first", "completed")
        assert process.poll() is None  # second cannot finish before the gate exists
        assert not any("second" in line and "completed" in line for line in before)
        gate.touch()
        after = _until(lines, "second", "completed")
        exit_code = process.wait(timeout=HANG_GUARD_S)
        assert exit_code == 0, (project / "stderr.txt").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=HANG_GUARD_S)
        process.stdout.close()  # type: ignore[union-attr]
    output = "".join(before + after)
    assert "pipeline 'waiting'" in output
    assert output.index("first") < output.index("second")
