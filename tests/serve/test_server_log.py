"""``mlcycle serve`` writes the real prediction log (answers, shadow copies) and takes feedback."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from deltalake import DeltaTable
from tests.serve.conftest import echo_model, rows
from tests.serve.test_server_process import serving, start

import mlcycle as mc
from mlcycle.serve import log_table_name, spool_dir
from mlcycle.settings import RegistrySettings, Settings
from mlcycle.workspace import Workspace

pytestmark = pytest.mark.slow


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``echo`` 1 (id) answers as ``primary``; ``echo`` 2 (id + 1000) shadows it."""
    settings = Settings(home=tmp_path, actor="ana", registry=RegistrySettings(guarded_aliases=()))
    with Workspace.open(settings) as workspace:
        for offset in (0.0, 1000.0):
            model, frame = echo_model(offset)
            workspace.registry.register("echo", model, input_example=frame)
        workspace.registry.promote("echo", 1, to="production")
        workspace.deployments.deploy("echo", model="echo@production", shadow=["echo/2"])
    (tmp_path / "mlcycle.toml").write_text("[registry]\nguarded_aliases = []\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_prediction_and_label_lands_in_the_logs_and_sigterm_loses_nothing(home: Path) -> None:
    answers = []
    with serving(home, "echo", "--workers", "2") as url:
        for n in range(40):
            with httpx.Client(base_url=url, timeout=30) as client:  # a new connection each
                answer = client.post(
                    "/v1/models/echo:predict",
                    json={"instances": rows(n, n + 0.5)},
                    headers={"x-request-id": f"req-{n}"},
                )
            answers.append(answer.json())
        labels = [{"request_id": f"req-{n}", "row_index": 1, "label": n * 2} for n in range(20)]
        labels.append({"request_id": "req-unknown", "label": 1.0})
        receipt = httpx.post(f"{url}/v1/models/echo:feedback", json={"labels": labels}, timeout=60)
    # The server is stopped with SIGTERM: every worker closed its log, so the spool is empty
    # and every row is in the Delta table itself.
    assert list(spool_dir(Settings(home=home)).glob("*/*.arrows")) == []
    table = DeltaTable(str(home / ".mlcycle" / "artifacts" / "tables" / log_table_name("echo")))
    assert table.to_pyarrow_table().num_rows == 160
    try:
        frame = mc.serve.predictions("echo")
        labelled = mc.serve.labelled("echo", variant="primary")
    finally:
        mc.close()
    assert receipt.json() == {"recorded": 21, "unknown_request_ids": ["req-unknown"]}
    got = labelled[labelled["label"].notna()]
    assert len(got) == 20
    assert (got["row_index"] == 1).all()
    assert (got["label"] == 2 * (got["inputs.id"] - 0.5)).all()
    assert (got["label_delay_s"] > 0).all()
    assert [answer["predictions"] for answer in answers] == [[n, n + 0.5] for n in range(40)]
    primary = frame[~frame["shadow"]]
    shadow = frame[frame["shadow"]]
    assert sorted(primary["request_id"]) == sorted(f"req-{n}" for n in range(40) for _ in "ab")
    assert set(primary["variant"]) == {"primary"}
    assert set(primary["model_version"]) == {1}
    assert (primary["output"] == primary["inputs.id"]).all()
    assert (primary["row_index"] == (primary["inputs.id"] % 1 > 0)).all()
    assert (primary["latency_ms"] > 0).all()
    assert set(shadow["variant"]) == {"shadow"}
    assert set(shadow["model_version"]) == {2}
    assert sorted(shadow["request_id"]) == sorted(primary["request_id"])
    assert (shadow["output"] == shadow["inputs.id"] + 1000).all()


def shadow_processes(server: int) -> list[int]:
    """The shadow processes among ``server``'s children (they run ``_shadow_child.main``)."""
    children = Path(f"/proc/{server}/task/{server}/children").read_text().split()
    return [
        int(pid)
        for pid in children
        if "mlcycle.serve._shadow_child" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    ]


def shadow_copies() -> list[float]:
    """The ids of the shadow copies the project's log holds (segments too)."""
    try:
        frame = mc.serve.predictions("echo")
    finally:
        mc.close()
    if frame.empty:  # nothing logged yet: no feature columns either
        return []
    return sorted(frame[frame["shadow"]]["inputs.id"])


def test_the_shadow_process_writes_out_its_log_and_ends_when_the_server_is_killed(
    home: Path, wait_until: Callable[[Callable[[], bool]], None]
) -> None:
    """SIGKILL the serving process: its shadow's process still writes out its log, then exits.

    It reads the end of its socket and syncs its segments, which the next
    log opened on the machine rolls into the Delta table.
    """
    server, url = start(home, "echo")
    try:
        shadows = shadow_processes(server.pid)
        assert len(shadows) == 1
        for n in range(5):
            httpx.post(f"{url}/v1/models/echo:predict", json={"instances": rows(n)}, timeout=30)
        wait_until(lambda: shadow_copies() == [0.0, 1.0, 2.0, 3.0, 4.0])
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
        wait_until(lambda: not running(shadows[0]))  # the shadow's process did not outlive it
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)
    assert shadow_copies() == [0.0, 1.0, 2.0, 3.0, 4.0], "still read from the spool"
    with Workspace.open(Settings(home=home)) as workspace:
        workspace.prediction_log().close()
    table = DeltaTable(str(home / ".mlcycle" / "artifacts" / "tables" / log_table_name("echo")))
    copies = table.to_pyarrow_table().to_pandas()
    assert sorted(copies[copies["shadow"]]["inputs"].map(lambda x: x["id"])) == [0, 1, 2, 3, 4]


def running(pid: int) -> bool:
    """Whether a thread of ``pid`` runs (an exited orphan nobody reaped yet is a zombie).

    Every thread counts: a process whose main thread is a zombie while
    another still exits holds its files, and their locks, until that one ends.
    """
    states = []
    with contextlib.suppress(FileNotFoundError):  # reaped, or a thread gone meanwhile
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
    return any(state != "Z" for state in states)
