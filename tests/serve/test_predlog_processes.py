"""The prediction log across real processes: graceful stop, SIGKILL, several writers at once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlcycle.serve import PredictionLog, read_predictions, spool_dir
from mlcycle.settings import Settings
from mlcycle.store import LocalArtifactStore

CHILD = Path(__file__).with_name("predlog_child.py")
pytestmark = pytest.mark.slow


def _start(
    home: Path, deployment: str, *, count: int, interval: float, roll: int = 1 << 26
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(home), deployment, str(count), str(interval), str(roll)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _lines_until(child: subprocess.Popen[str], count: int) -> list[tuple[int, float]]:
    seen = []
    assert child.stdout is not None
    while len(seen) < count:
        line = child.stdout.readline()
        assert line, "the child ended early"
        index, at = line.split()
        seen.append((int(index), float(at)))
    return seen


def _ids(home: Path, deployment: str) -> list[str]:
    settings = Settings(home=home)
    tables = LocalArtifactStore(root=settings.workspace_dir / "artifacts")
    read = read_predictions(spool_dir=spool_dir(settings), tables=tables, deployment=deployment)
    return read.column("request_id").to_pylist()


def _reopen(home: Path) -> None:
    settings = Settings(home=home)
    tables = LocalArtifactStore(root=settings.workspace_dir / "artifacts")
    PredictionLog(spool_dir=spool_dir(settings), tables=tables).close()


def test_sigterm_stops_gracefully_and_loses_nothing(tmp_path: Path) -> None:
    child = _start(tmp_path, "bike-demand", count=0, interval=0.002)
    seen = _lines_until(child, 200)
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 0
    assert out.strip().endswith("closed")
    appended = len(seen) + len(out.strip().splitlines()) - 1
    ids = _ids(tmp_path, "bike-demand")
    assert len(ids) == 2 * appended
    assert set(ids) == {f"bike-demand-{i}" for i in range(appended)}
    assert list(spool_dir(Settings(home=tmp_path)).glob("*/*.arrows")) == []


def test_after_sigkill_at_most_the_last_second_is_lost(tmp_path: Path) -> None:
    child = _start(tmp_path, "bike-demand", count=0, interval=0.005)
    seen = _lines_until(child, 400)  # about two seconds of appends
    child.send_signal(signal.SIGKILL)
    killed_at = time.time()
    child.wait(timeout=60)
    assert child.stdout is not None
    rest = child.stdout.read().split("\n")
    child.stdout.close()
    seen += [(int(i), float(t)) for i, t in (line.split() for line in rest if line.strip())]
    orphans = list(spool_dir(Settings(home=tmp_path)).glob("*/*.arrows"))
    assert len(orphans) == 1
    _reopen(tmp_path)  # rolls the orphan over
    ids = set(_ids(tmp_path, "bike-demand"))
    kept = sorted(int(request.rsplit("-", 1)[1]) for request in ids)
    assert kept == list(range(len(kept)))  # complete records, in order, none torn
    older = [index for index, at in seen if at < killed_at - 1.0]
    assert older  # the test appended for longer than a second
    assert set(older) <= set(kept)
    assert list(spool_dir(Settings(home=tmp_path)).glob("*/*.arrows")) == []


def test_several_processes_append_to_one_table(tmp_path: Path) -> None:
    children = [
        _start(tmp_path, "bike-demand", count=150, interval=0.001, roll=2048) for _ in range(3)
    ]
    for child in children:
        out, _ = child.communicate(timeout=300)
        assert child.returncode == 0, out
    ids = _ids(tmp_path, "bike-demand")
    assert len(ids) == 3 * 150 * 2


def test_rows_logged_after_a_write_failed_part_way_are_kept(tmp_path: Path) -> None:
    child = Path(__file__).with_name("predlog_full_disk_child.py")
    done = subprocess.run(
        [sys.executable, str(child), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1000 rows of deployment bikes (requests r1000, r1001" in done.stderr
    assert "could not be written and are lost" in done.stderr
    tables = LocalArtifactStore(root=tmp_path / "tables")
    logged = read_predictions(spool_dir=tmp_path / "spool", tables=tables, deployment="bikes")
    ids = set(logged.column("request_id").to_pylist())
    assert ids == {f"r{n}" for n in [*range(10), *range(5000, 5010)]}  # the torn batch alone lost
    assert not list((tmp_path / "spool").glob("*/*.arrows"))
