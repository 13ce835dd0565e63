"""A real ``mlcycle serve`` on loopback: its answers and its failed requests, monitored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from tests.monitor.conftest import serve_bike
from tests.serve.test_server_process import serving

from mlcycle.settings import Settings
from mlcycle.workspace import Workspace

pytestmark = pytest.mark.slow

PREDICT = "/v1/models/bike:predict"


def test_failed_requests_are_logged_and_give_the_error_rate(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, actor="ana")
    with Workspace.open(settings) as ws:
        serve_bike(ws)
    (tmp_path / "mlcycle.toml").write_text("")
    with serving(tmp_path, "bike") as url, httpx.Client(base_url=url, timeout=30) as client:
        for n in range(6):
            good = client.post(PREDICT, json={"instances": [{"temp": 0.1 * n, "season": 1.0}]})
            assert good.status_code == 200
        for _ in range(2):
            bad = client.post(PREDICT, json={"instances": [{"temp": "warm", "season": 1.0}]})
            assert bad.status_code == 422
    with Workspace.open(settings) as ws:
        answered = ws.monitor.run("bike", until=datetime.now(UTC) + timedelta(days=1))
        logged = ws.feedback.labelled("bike")
    [window] = answered
    assert window.rows == 6
    assert window.values["error_rate"] == pytest.approx(2 / 8)
    assert window.values["nan_outputs"] == 0
    assert logged.num_rows == 6  # readers other than monitoring never see the failures
    assert "error" not in logged.column_names
