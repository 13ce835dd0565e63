"""``mlcycle monitor run|results|report``: output, alerts per window, errors and exit codes."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from tests.cli.conftest import Invoke
from tests.monitor.alert_receivers import free_port
from tests.monitor.conftest import DAY, serve_bike, training_frame

from mlcycle import Workspace
from mlcycle.settings import load_settings

ALERTS = """
[alerts.rules.bike-drift]
when = "drift_share > 0.3"
notify = ["hook"]

[alerts.notifiers.hook]
kind = "webhook"
url = "http://127.0.0.1:{port}/down"
timeout_s = 1.0
"""


@pytest.fixture
def served(project: Path) -> Path:
    """The project serving ``bike``, two logged days (the second drifted), the clock after them."""
    config = project / "mlcycle.toml"
    text = config.read_text().replace('# mode = "real"', 'mode = "simulated"', 1)
    config.write_text(text + ALERTS.format(port=free_port()))
    with Workspace.open(load_settings(project)) as ws:
        bike = serve_bike(ws)
        frame = training_frame(200, seed=7)[["temp", "season"]]
        bike.write(5, frame)
        bike.write(29, frame.assign(temp=frame["temp"] + 5))
        ws.clock.set(DAY + timedelta(days=2, hours=3))  # type: ignore[attr-defined]
    return project


def test_run_scores_stores_and_alerts_though_the_webhook_is_down(
    served: Path, invoke: Invoke
) -> None:
    result = invoke("monitor", "run", "bike")
    assert result.exit_code == 0, result.output
    assert "2 window(s) scored and stored" in result.output
    assert "firing: bike-drift" in result.output
    again = invoke("monitor", "run", "bike")
    assert "no new complete window" in again.output
    with Workspace.open(load_settings(served)) as ws:
        [alert] = ws.alerts.list(deployment="bike")
        [delivery] = ws.alerts.deliveries(alert_id=alert.id)
    assert alert.window_end == DAY + timedelta(days=2)
    assert delivery.status == "pending"  # kept, to be retried with backoff
    assert delivery.last_error is not None


def test_results_and_report(served: Path, invoke: Invoke) -> None:
    assert "no stored results for 'bike'" in invoke("monitor", "results", "bike").output
    invoke("monitor", "run", "bike", "--window", "1d")
    shown = invoke("monitor", "results", "bike", "--metric", "rows", "--json")
    assert [row["value"] for row in json.loads(shown.output)] == [200.0, 200.0]
    table = invoke("monitor", "results", "bike", "--metric", "drift_share")
    assert "drift_share" in table.output
    written = invoke("monitor", "report", "--out", "reports")
    assert written.exit_code == 0, written.output
    assert (served / "reports" / "monitor-bike.html").is_file()
    assert (served / "reports" / "monitor-bike.json").is_file()


def test_run_json_over_hours(served: Path, invoke: Invoke) -> None:
    result = invoke("monitor", "run", "bike", "--window", "6h", "--since", "2030-05-01", "--json")
    windows = json.loads(result.output)
    assert [w["rows"] for w in windows] == [200, 0, 0, 0, 200, 0, 0, 0]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("monitor", "run", "bikes"), "no deployment 'bikes'"),
        (("monitor", "run", "bike", "--since", "yesterday"), "--since 'yesterday'"),
        (("monitor", "run", "bike", "--window", "soon"), "'soon'"),
        (("monitor", "results", "bike!"), "deployment"),
    ],
)
def test_bad_arguments_exit_1_naming_the_problem(
    served: Path, invoke: Invoke, args: tuple[str, ...], problem: str
) -> None:
    del served
    result = invoke(*args)
    assert result.exit_code == 1
    assert problem in result.output


def test_a_monitors_table_that_does_not_parse_points_at_the_key(
    project: Path, invoke: Invoke
) -> None:
    with (project / "mlcycle.toml").open("a") as stream:
        stream.write('[monitors.bike]\nwindow = "1d"\ndrift_share = 2\n')
    result = invoke("monitor", "run", "bike")
    assert result.exit_code == 1
    assert "monitors.bike.drift_share" in result.output


def test_report_without_results_says_what_to_run(project: Path, invoke: Invoke) -> None:
    result = invoke("monitor", "report")
    assert result.exit_code == 1
    assert "mlcycle monitor run" in result.output
