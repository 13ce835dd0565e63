"""Issue 7 lines the first tests left unshown: overload in the error rate, the age-quality curve
in the report, ``label_column`` where labels are read, labels for requests never logged, and a
notification taken over by another sender mid-send."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from tests.monitor.alert_receivers import free_port
from tests.monitor.conftest import DAY, Served, training_frame
from tests.monitor.test_alerts_notifiers import attempted, drifting, open_workspace, wait_for
from tests.serve.models import Slow
from tests.serve.test_server_process import serving

import mlcycle as mc
from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.settings import RegistrySettings, Settings
from mlcycle.workspace import Workspace


@pytest.mark.slow
def test_requests_shed_by_an_overloaded_server_count_as_errors(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, actor="ana", registry=RegistrySettings(guarded_aliases=()))
    with Workspace.open(settings) as ws:
        example = pd.DataFrame({"id": [1.0, 2.0]})
        ws.registry.register("slow", Slow(2.0), input_example=example, flavor="pyfunc")
        ws.deployments.deploy("slow", model="slow/1")
    (tmp_path / "mlcycle.toml").write_text("[registry]\nguarded_aliases = []\n")
    env = {"MLCYCLE_SERVE__MAX_INFLIGHT": "1", "MLCYCLE_REGISTRY__TRUSTED_PUBLISHERS": '["ana"]'}
    statuses: list[int] = []
    with serving(tmp_path, "slow", "--workers", "1", env=env) as url:

        def ask(n: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                answer = client.post("/v1/models/slow:predict", json={"instances": [{"id": n}]})
                statuses.append(answer.status_code)

        crowd = [threading.Thread(target=ask, args=(float(n),)) for n in range(6)]
        for thread in crowd:
            thread.start()
        for thread in crowd:
            thread.join()
    shed = statuses.count(503)
    assert set(statuses) == {200, 503}  # one in flight at a time: the others are shed
    with Workspace.open(settings) as ws:
        [window] = ws.monitor.run("slow", until=datetime.now(UTC) + timedelta(days=1))
        answered = ws.feedback.labelled("slow")
    assert window.rows == 6 - shed
    assert window.values["error_rate"] == pytest.approx(shed / 6)
    assert answered.num_rows == 6 - shed  # the shed requests are errors, not answers


def test_the_report_shows_how_fast_models_decay(monitored: Served, tmp_path: Path) -> None:
    ws = monitored.ws
    ws.clock.set(DAY - timedelta(days=2))  # type: ignore[attr-defined]
    frame = training_frame(300, seed=6)
    worse = Ridge().fit(frame[["temp"]].assign(season=0.0), frame["cnt"])  # ignores season
    ws.registry.register("bike", worse, input_example=frame[["temp", "season"]].head())
    ids = monitored.write(2, frame[["temp", "season"]])
    ws.feedback.record("bike", [(i, float(c)) for i, c in zip(ids, frame["cnt"], strict=True)])
    ws.monitor.run("bike", until=DAY + timedelta(days=1))

    html = ws.monitor.report("bike", tmp_path / "out")

    body = json.loads((tmp_path / "out" / "monitor-bike.json").read_text())
    curve = body["age_quality"]
    assert curve["note"] == ""
    assert [v["version"] for v in curve["versions"]] == [1, 2]
    assert [v["age_days"] for v in curve["versions"]] == pytest.approx([11.0, 3.0], abs=0.01)
    first, second = curve["versions"]
    assert first["rmse"] < 2 < second["rmse"]
    assert first["rows"] == 300
    text = html.read_text()
    assert "Quality by model age" in text
    assert "aria-label='quality by model age'" in text
    assert "3 days old" in text  # the axis is in days of age, not dates
    assert "11 days old" in text


def test_the_report_says_why_there_is_no_decay_curve_yet(monitored: Served, tmp_path: Path) -> None:
    monitored.write(1, training_frame(20, seed=21)[["temp", "season"]])  # never labelled
    monitored.ws.monitor.run("bike", until=DAY + timedelta(days=1))
    html = monitored.ws.monitor.report("bike", tmp_path / "out")
    body = json.loads((tmp_path / "out" / "monitor-bike.json").read_text())
    assert body["age_quality"]["versions"] == []
    assert "no monitored window with labels" in body["age_quality"]["note"]
    assert "Not shown: deployment &#x27;bike&#x27; has no monitored window" in html.read_text()

    empty = monitored.ws.monitor.report("nothing-here", tmp_path / "none")
    assert "Not shown: no monitored windows yet" in empty.read_text()


@pytest.mark.parametrize(
    "monitored", [{"monitors": {"bike": {"label_column": "cnt"}}}], indirect=True
)
def test_label_column_is_the_column_labels_are_joined_from(
    monitored: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = monitored.ws
    ws.deployments.deploy("bike", model="bike/1", key_columns=["temp", "season"])
    frame = training_frame(50, seed=22)
    monitored.write(1, frame[["temp", "season"]])
    truth = ws.data.register("bike-truth", frame.assign(other=0.0), validate=False)
    (ws.settings.home / "mlcycle.toml").write_text('[monitors.bike]\nlabel_column = "cnt"\n')
    monkeypatch.chdir(ws.settings.home)
    try:
        receipt = mc.serve.join_labels("bike", truth.ref)  # no label_column: the monitor's
    finally:
        mc.close()
    assert receipt.recorded == 50
    [result] = ws.monitor.run("bike", until=DAY + timedelta(days=1))
    assert result.values["labelled_rows"] == 50
    assert result.values["rmse"] < 5  # type: ignore[operator]  # cnt, not the column of zeros


def test_joining_labels_without_a_label_column_names_both_ways_to_give_one(
    monitored: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = monitored.ws
    ws.deployments.deploy("bike", model="bike/1", key_columns=["temp", "season"])
    monitored.write(1, training_frame(10, seed=23)[["temp", "season"]])
    truth = ws.data.register("bike-truth", training_frame(10, seed=23), validate=False)
    monkeypatch.chdir(ws.settings.home)
    try:
        with pytest.raises(ValidationFailed, match=r"label_column='COL'.*\[monitors\.bike\]"):
            mc.serve.join_labels("bike", truth.ref)
    finally:
        mc.close()
    assert ws.feedback.labelled("bike", since=DAY).column("label").null_count == 10


def test_labels_only_for_requests_never_logged_leave_the_window_unlabelled(
    monitored: Served,
) -> None:
    monitored.write(1, training_frame(30, seed=24)[["temp", "season"]])
    receipt = monitored.ws.feedback.record("bike", [("ghost-1", 3.0), ("ghost-2", 4.0)])
    assert receipt.unknown == ("ghost-1", "ghost-2")
    [result] = monitored.ws.monitor.run("bike", until=DAY + timedelta(days=1))
    assert result.rows == 30
    assert result.values["labelled_rows"] == 0
    assert result.values.get("rmse") is None  # nothing to score: missing, not zero
    with pytest.raises(NotFound, match="no monitored window with labels"):
        monitored.ws.monitor.age_quality("bike")


def test_infinite_inputs_and_outputs_are_counted_and_mae_is_scored(monitored: Served) -> None:
    frame = training_frame(10, seed=25)
    inputs = frame[["temp", "season"]].copy()
    inputs.loc[0, "temp"] = float("inf")
    inputs.loc[1, "temp"] = float("-inf")
    outputs = monitored.model.predict(frame[["temp", "season"]])
    outputs[2] = float("inf")
    outputs[3] = float("nan")
    ids = monitored.write(1, inputs, outputs=outputs)
    truth = outputs[4:] + 2.0  # every finite answer is 2 below its label
    monitored.ws.feedback.record("bike", list(zip(ids[4:], map(float, truth), strict=True)))
    [result] = monitored.ws.monitor.run("bike", until=DAY + timedelta(days=1))
    assert result.values["nan_inputs"] == 2
    assert result.values["nan_outputs"] == 2
    assert result.values["labelled_rows"] == 6
    assert result.values["mae"] == pytest.approx(2.0)
    assert result.values["rmse"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    "monitored",
    [
        {
            "monitors": {
                "bike": {"task": "classification", "positive_label": "busy", "slices": ["season"]}
            }
        }
    ],
    indirect=True,
)
def test_a_classifier_is_scored_per_slice(monitored: Served) -> None:
    inputs = training_frame(8, seed=26)[["temp", "season"]].assign(
        season=[1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]
    )
    said = ["busy", "busy", "quiet", "quiet", "busy", "busy", "quiet", "quiet"]
    truth = ["busy", "busy", "quiet", "quiet", "quiet", "quiet", "busy", "busy"]
    ids = monitored.write(3, inputs, outputs=said)
    monitored.ws.feedback.record("bike", list(zip(ids, truth, strict=True)))
    [result] = monitored.ws.monitor.run("bike", until=DAY + timedelta(days=1))
    values = result.values
    assert values["accuracy"] == pytest.approx(0.5)
    assert values["accuracy[season=1]"] == pytest.approx(1.0)
    assert values["accuracy[season=2]"] == pytest.approx(0.0)
    assert values["f1[season=1]"] == pytest.approx(1.0)


def test_a_version_that_cannot_be_scored_is_in_the_report_with_its_note(
    monitored: Served, tmp_path: Path
) -> None:
    ws = monitored.ws
    frame = training_frame(100, seed=27)
    example = pd.DataFrame({"id": [1.0, 2.0]})  # reads a column the log does not have
    ws.registry.register("bike", Slow(0.0), input_example=example, flavor="pyfunc")  # a pickle
    ids = monitored.write(2, frame[["temp", "season"]])
    ws.feedback.record("bike", [(i, float(c)) for i, c in zip(ids, frame["cnt"], strict=True)])
    ws.monitor.run("bike", until=DAY + timedelta(days=1))
    html = ws.monitor.report("bike", tmp_path / "out")
    body = json.loads((tmp_path / "out" / "monitor-bike.json").read_text())
    first, second = body["age_quality"]["versions"]
    assert first["rmse"] < 2
    assert second["rmse"] is None  # missing, not NaN (which is no JSON)
    assert second["note"].startswith("not scored:")
    assert "not scored:" in html.read_text()


def test_a_send_taken_over_after_its_lease_ran_out_does_not_fail_the_first_sender(
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing listens yet: the first attempt fails and waits 30 s
    url = f"http://127.0.0.1:{port}/hooks/alerts"
    with open_workspace(tmp_path, {"kind": "webhook", "url": url}) as (first, clock):
        first.alerts.evaluate(drifting())
        wait_for(lambda: attempted(first.alerts))
        clock.advance(timedelta(seconds=31))
        received: list[str] = []
        with Workspace.open(first.settings) as second:

            class Handler(BaseHTTPRequestHandler):
                def do_POST(self) -> None:
                    self.rfile.read(int(self.headers["Content-Length"]))
                    received.append(self.path)
                    if len(received) == 1:  # the first sender waits here past its lease
                        clock.advance(timedelta(minutes=5))
                        [taken] = second.alerts.deliver()  # another process takes it over
                        assert (taken.status, taken.attempts) == ("delivered", 2)
                    self.send_response(200)
                    self.end_headers()

                def log_message(self, *args: object) -> None:
                    del args

            server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                assert first.alerts.deliver() == []  # its outcome is the other sender's
            finally:
                server.shutdown()
                server.server_close()
        [done] = first.alerts.deliveries()
    assert (done.status, done.attempts) == ("delivered", 2)
    assert len(received) == 2  # at least once: both senders reached the receiver
