"""The loop end to end with a real ``mlcycle serve``: a shadow trial on live traffic, promoted.

The server is a real process on loopback serving the deployment ``demand``.
An alert starts a retrain; the server picks up the shadow, answers requests
with production while the candidate predicts copies of them, and logs both
under the same request ids; labels come back through the server's feedback
route; the loop judges, promotes, and the server follows the alias move.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from tests.agent.training_project import (
    DEPLOYMENT,
    MODEL,
    deploy_production,
    fire,
    world,
    write_pipeline,
)
from tests.conftest import free_port

from mlcycle import Workspace
from mlcycle.project import init_project
from mlcycle.settings import load_settings

pytestmark = pytest.mark.slow

PREDICT = f"/v1/models/{DEPLOYMENT}:predict"
FEEDBACK = f"/v1/models/{DEPLOYMENT}:feedback"
CONFIG = """
[alerts.rules.demand-drift]
when = "drift_share > 0.3"

[registry.gates.demand]
require_disjoint_test = false

[training.demand]
pipeline = "pipelines.py:retrain"
model = "demand"
on_alerts = ["demand-drift"]
trial = "shadow"
margin = 0.05
min_labelled = 40
"""


@contextmanager
def serving(home: Path) -> Iterator[str]:
    """``mlcycle serve demand`` until ready; yields its URL; SIGTERM on the way out."""
    port = free_port()
    log = home / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCYCLE_")}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlcycle", "--home", str(home), "serve", DEPLOYMENT,
             "--port", str(port)],
            env={**env, "MLCYCLE_SERVE__POLL_INTERVAL_S": "0.2"},
            stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _ready(url, process, log), "the server to be ready")
        yield url
        assert process.poll() is None, log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def _ready(url: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    assert process.poll() is None, log.read_text()
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _wait(check: object, what: str, guard_s: float = 180) -> None:
    """Poll ``check`` until true; the deadline only guards against hanging."""
    deadline = time.monotonic() + guard_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def _send(client: httpx.Client, start: int, count: int) -> list[dict[str, object]]:
    """``count`` live requests with ids ``live-<n>``, each labelled through the feedback route."""
    live = world(100 + start, -1.0, count)
    answers = []
    for i in range(count):
        request_id = f"live-{start + i}"
        row = {"x1": float(live["x1"].iloc[i]), "x2": float(live["x2"].iloc[i])}
        answer = client.post(
            PREDICT, json={"instances": [row]}, headers={"x-request-id": request_id}
        )
        assert answer.status_code == 200, answer.text
        answers.append(answer.json())
        label = {"request_id": request_id, "label": float(live["y"].iloc[i])}
        stored = client.post(FEEDBACK, json={"labels": [label]})
        assert stored.status_code == 200, stored.text
    return answers


def test_a_shadow_trial_on_a_real_server_ends_in_a_promotion_it_follows(tmp_path: Path) -> None:
    home = init_project(tmp_path / "project")
    with (home / "mlcycle.toml").open("a") as stream:
        stream.write(CONFIG)
    write_pipeline(home)
    with Workspace.open(load_settings(home)) as ws:
        deploy_production(ws)
    with serving(home) as url, httpx.Client(base_url=url, timeout=30) as client:
        before = _send(client, 0, 5)
        assert {(a["version"], a["variant"]) for a in before} == {(1, "primary")}
        with Workspace.open(load_settings(home)) as ws:
            [alert_id] = fire(ws, "drift_share", 0.6, datetime.now(UTC))
            steps = ws.training.run_once()
            assert steps[-1].event == "training.trial_started", steps[-1].why
            sent = 5
            promoted = []

            def trial_decided() -> bool:
                nonlocal sent, promoted
                _send(client, sent, 20)
                sent += 20
                promoted = ws.training.run_once()
                return bool(promoted)

            _wait(trial_decided, "the shadow trial to be decided")
            [step] = promoted
            assert step.event == "training.promoted", step.why
            assert step.alert_id == alert_id
            assert step.payload["verdict"]["labelled"] >= 40
            assert ws.registry.get(f"{MODEL}@production").version == 2
            shadowed = ws.feedback.labelled(DEPLOYMENT)
            copies = [
                r for r in shadowed.select(["model_version", "shadow"]).to_pylist() if r["shadow"]
            ]
            assert copies
            assert {c["model_version"] for c in copies} == {2}
        _wait(
            lambda: (
                {(a["version"], a["variant"]) for a in _send(client, sent, 3)} == {(2, "primary")}
            ),
            "the server to follow the promotion",
        )
