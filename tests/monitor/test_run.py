"""``ws.monitor.run``: windows of a real prediction log scored, stored once, alerted on."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import Ridge
from tests.monitor.conftest import DAY, Served, training_frame
from tests.monitor.test_alerts import settle

import mlcycle as mc
from mlcycle.errors import NotFound, ValidationFailed


@pytest.mark.parametrize(
    "monitored", [{"monitors": {"bike": {"slices": ["season"]}}}], indirect=True
)
def test_a_day_is_scored_against_the_training_data_and_stored_once(monitored: Served) -> None:
    ws = monitored.ws
    same = training_frame(500, seed=1)[["temp", "season"]]
    ids = monitored.write(3, same)
    shifted = same.assign(temp=same["temp"] + 2.0)
    monitored.write(30, shifted)  # the next day: temperatures the model never saw
    truth = 100 * same["temp"] + 10 * same["season"]
    ws.clock.set(DAY + timedelta(days=2, hours=1))  # type: ignore[attr-defined]
    ws.feedback.record("bike", [(i, float(t)) for i, t in zip(ids[:300], truth, strict=False)])

    first, second = ws.monitor.run("bike")

    assert (first.window_start, first.window_end) == (DAY, DAY + timedelta(days=1))
    assert first.rows == 500
    assert second.rows == 500
    assert first.values["drift_share"] == 0.0
    assert first.values["drifted.temp"] == 0.0
    assert second.values["drifted.temp"] == 1.0
    assert second.values["drift.temp"] < 0.05
    assert second.values["skew_share"] == 0.5  # temp is out of the training range
    assert first.values["skew_share"] == 0.0
    assert first.values["labelled_rows"] == 300
    assert first.values["rmse"] is not None
    assert first.values["rmse"] < 5
    assert 0 < first.values["rmse[season=1]"] < 5  # type: ignore[operator]
    assert first.values["r2"] > 0.99  # type: ignore[operator]
    assert first.values["prediction_drift"] is None  # the first window is the reference
    assert second.values["prediction_drift"] is not None
    assert second.values["prediction_drift"] < 0.05
    assert first.values["nan_inputs"] == 0
    assert first.values["schema_violations"] == 0
    assert first.values["latency_p50_ms"] == 2.0
    assert first.values["model_age_days"] == pytest.approx(11.0, abs=0.01)
    assert first.values["data_age_days"] == pytest.approx(11.0, abs=0.01)
    assert first.values["label_delay_hours"] == pytest.approx(46.0, abs=0.01)  # 03:00 to 01:00
    assert first.values["error_rate"] == 0.0
    assert first.drift is not None
    assert first.drift.columns["temp"].test == "ks"

    assert ws.monitor.run("bike") == []  # stored: nothing twice
    stored = ws.monitor.results("bike", metrics=["rows", "drift_share"])
    assert stored["metric"].tolist() == ["drift_share", "rows", "drift_share", "rows"]
    assert stored["value"].tolist() == [0.0, 500.0, 0.5, 500.0]


def test_an_empty_window_is_stored_with_no_rows(monitored: Served) -> None:
    frame = training_frame(50, seed=2)[["temp", "season"]]
    monitored.write(49, frame)  # day 3, written first: the log is read in time order anyway
    monitored.write(1, frame)  # day 1; day 2 is empty
    monitored.write(0.5, frame, spool_only=True)  # earlier, still in the spool: read last
    monitored.ws.clock.set(DAY + timedelta(days=3))  # type: ignore[attr-defined]
    results = monitored.ws.monitor.run("bike")
    assert [r.rows for r in results] == [100, 0, 50]
    assert results[1].values["rows"] == 0
    assert results[1].drift is None
    assert "drift_share" not in results[1].values


def test_a_feature_logged_only_as_nan_is_drifted_and_counted(monitored: Served) -> None:
    frame = training_frame(40, seed=3)[["temp", "season"]].assign(temp=np.nan)
    monitored.write(1, frame, outputs=np.full(40, np.nan))
    [result] = monitored.ws.monitor.run("bike", until=DAY + timedelta(days=1))
    assert result.values["drifted.temp"] == 1.0
    assert result.values["drift.temp"] is None
    assert result.values["nan_inputs"] == 40
    assert result.values["nan_outputs"] == 40
    assert result.values["schema_violations"] == 40  # temp is not nullable in the signature


@pytest.mark.parametrize(
    "monitored", [{"monitors": {"bike": {"features": ["temp", "hum"]}}}], indirect=True
)
def test_a_configured_feature_missing_from_the_log_names_it(monitored: Served) -> None:
    monitored.write(1, training_frame(10)[["temp", "season"]])
    with pytest.raises(ValidationFailed, match=r"\['hum'\].*\[monitors.bike\]"):
        monitored.ws.monitor.run("bike", until=DAY + timedelta(days=1))
    assert monitored.ws.monitor.results("bike").empty


def test_labels_for_unknown_request_ids_are_kept_and_ignored(monitored: Served) -> None:
    ids = monitored.write(1, training_frame(20, seed=4)[["temp", "season"]])
    receipt = monitored.ws.feedback.record("bike", [(ids[0], 50.0), ("nobody", 1.0)])
    assert receipt.unknown == ("nobody",)
    [result] = monitored.ws.monitor.run("bike", until=DAY + timedelta(days=1))
    assert result.values["labelled_rows"] == 1


def test_an_unknown_deployment_is_an_error_naming_the_known_ones(monitored: Served) -> None:
    with pytest.raises(NotFound, match=r"no deployment 'bikes'.*bike"):
        monitored.ws.monitor.run("bikes")


def test_a_deployment_without_a_log_yet_has_nothing_to_score(monitored: Served) -> None:
    assert monitored.ws.monitor.run("bike") == []
    assert monitored.ws.monitor.results("bike").empty


@pytest.mark.parametrize(
    "monitored", [{"monitors": {"bike": {"label_column": "cnt"}}}], indirect=True
)
def test_the_report_shows_the_stored_windows_offline(monitored: Served, tmp_path: Path) -> None:
    frame = training_frame(100, seed=5)[["temp", "season"]]
    ids = monitored.write(1, frame)
    monitored.write(25, frame.assign(temp=frame["temp"] + 3))
    monitored.ws.feedback.record("bike", [(i, 40.0) for i in ids])
    monitored.ws.monitor.run("bike", until=DAY + timedelta(days=2))
    html = monitored.ws.monitor.report("bike", tmp_path / "out")
    text = html.read_text()
    assert html.name == "monitor-bike.html"
    assert "<svg" in text
    assert "aria-label='drift per feature'" in text
    assert "temp, window ending 2030-05-03 00:00" in text  # a cell of the drift grid
    assert "rmse" in text
    assert "http" not in text.replace("http://www.w3.org", "")  # nothing fetched
    body = json.loads((tmp_path / "out" / "monitor-bike.json").read_text())
    assert [w["values"]["rows"] for w in body["windows"]] == [100.0, 100.0]
    assert body["windows"][1]["values"]["drifted.temp"] == 1.0
    assert body["label_column"] == "cnt"
    assert "feedback labels of <code>cnt</code>" in text


def test_older_versions_are_scored_on_the_latest_labelled_window(monitored: Served) -> None:
    ws = monitored.ws
    ws.clock.set(DAY - timedelta(days=2))  # type: ignore[attr-defined]
    frame = training_frame(300, seed=6)
    worse = Ridge().fit(frame[["temp"]].assign(season=0.0), frame["cnt"])  # ignores season
    ws.registry.register("bike", worse, input_example=frame[["temp", "season"]].head())
    inputs = frame[["temp", "season"]]
    ids = monitored.write(2, inputs)
    ws.feedback.record("bike", [(i, float(c)) for i, c in zip(ids, frame["cnt"], strict=True)])
    ws.monitor.run("bike", until=DAY + timedelta(days=1))
    curve = ws.monitor.age_quality("bike")
    assert curve["version"].tolist() == [1, 2]
    assert curve["age_days"].tolist() == pytest.approx([11.0, 3.0], abs=0.01)
    assert curve["rmse"][0] < 2 < curve["rmse"][1]


def test_shadows_are_scored_apart_by_variant(monitored: Served) -> None:
    frame = training_frame(60, seed=8)
    inputs = frame[["temp", "season"]]
    ids = monitored.write(2, inputs)
    zeros = np.full(60, 0.0)
    monitored.write(2, inputs, outputs=zeros, variant="zero", latency_ms=9.0, ids=ids)
    truth = [(i, float(c)) for i, c in zip(ids, frame["cnt"], strict=True)]
    monitored.ws.feedback.record("bike", truth)
    [result] = monitored.ws.monitor.run("bike", until=DAY + timedelta(days=1))
    values = result.values
    assert result.rows == 60  # the shadow copies are not answers
    assert values["shadow.zero.rows"] == 60
    assert values["shadow.zero.latency_p50_ms"] == 9.0
    assert values["shadow.zero.labelled_rows"] == 60  # the same requests, so the same labels
    assert values["labelled_rows"] == 60
    assert values["rmse"] < 2  # type: ignore[operator]
    assert values["shadow.zero.rmse"] > 40  # type: ignore[operator]


@pytest.mark.parametrize(
    "monitored",
    [{"monitors": {"bike": {"task": "classification", "positive_label": "busy"}}}],
    indirect=True,
)
def test_a_classifier_gets_classification_metrics(monitored: Served) -> None:
    inputs = training_frame(8, seed=9)[["temp", "season"]]
    said = ["busy", "busy", "quiet", "quiet", "busy", "quiet", "busy", "quiet"]
    truth = ["busy", "quiet", "quiet", "quiet", "busy", "quiet", "busy", "busy"]
    ids = monitored.write(3, inputs, outputs=said)
    monitored.ws.feedback.record("bike", list(zip(ids, truth, strict=True)))
    [result] = monitored.ws.monitor.run("bike", until=DAY + timedelta(days=1))
    values = result.values
    assert values["accuracy"] == pytest.approx(6 / 8)
    assert values["precision"] == pytest.approx(3 / 4)
    assert values["recall"] == pytest.approx(3 / 4)
    assert values["f1"] == pytest.approx(3 / 4)
    assert values["roc_auc"] == pytest.approx(0.75)
    assert values["nan_outputs"] == 0
    assert "rmse" not in values


def test_the_sdk_runs_on_the_working_directory_s_project(
    monitored: Served, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monitored.write(4, training_frame(30, seed=10)[["temp", "season"]])
    monkeypatch.chdir(monitored.ws.settings.home)
    try:
        [result] = mc.monitor.run("bike", until=DAY + timedelta(days=1))
        stored = mc.monitor.results("bike", metrics=["rows"])
        page = mc.monitor.report("bike", tmp_path / "sdk")
    finally:
        mc.close()
    assert result.rows == 30
    assert stored["value"].tolist() == [30.0]
    assert page.is_file()


def test_a_version_the_registry_does_not_know_is_still_monitored(monitored: Served) -> None:
    monitored.write(1, training_frame(20, seed=11)[["temp", "season"]], version=7)
    [result] = monitored.ws.monitor.run("bike", until=DAY + timedelta(days=1))
    assert result.rows == 20
    assert result.drift is None  # no lineage: no training data to compare with
    assert result.values["model_age_days"] is None
    assert result.values["nan_outputs"] == 0


def test_a_later_run_compares_outputs_with_the_stored_first_window(monitored: Served) -> None:
    frame = training_frame(80, seed=12)[["temp", "season"]]
    monitored.write(1, frame)
    [first] = monitored.ws.monitor.run("bike", until=DAY + timedelta(days=1))
    monitored.write(25, frame)  # the same inputs the next day: the same outputs
    [second] = monitored.ws.monitor.run("bike", until=DAY + timedelta(days=2))
    assert first.values["prediction_drift"] is None
    assert second.values["prediction_drift"] == pytest.approx(1.0)


def test_age_quality_needs_labels_and_says_how_to_get_them(monitored: Served) -> None:
    with pytest.raises(NotFound, match="no monitored window with labels"):
        monitored.ws.monitor.age_quality("bike")
    monitored.write(1, training_frame(10, seed=13)[["temp", "season"]])
    monitored.ws.clock.set(DAY + timedelta(days=1))  # type: ignore[attr-defined]
    with pytest.raises(NotFound, match="no labelled predictions"):
        monitored.ws.monitor.age_quality("bike", window="7d")


def test_a_window_shorter_than_a_second_is_refused(monitored: Served) -> None:
    with pytest.raises(ValidationFailed, match="shorter than a second"):
        monitored.ws.monitor.run("bike", window="0.5s")
    with pytest.raises(ValidationFailed, match="is not a duration"):
        monitored.ws.monitor.run("bike", window="daily")


def test_days_without_predictions_after_the_last_run_are_stored_empty(monitored: Served) -> None:
    monitored.write(1, training_frame(10, seed=14)[["temp", "season"]])
    assert len(monitored.ws.monitor.run("bike", until=DAY + timedelta(days=1))) == 1
    quiet = monitored.ws.monitor.run("bike", until=DAY + timedelta(days=3))  # an outage
    assert [(r.window_start, r.rows) for r in quiet] == [
        (DAY + timedelta(days=1), 0),
        (DAY + timedelta(days=2), 0),
    ]


def test_too_many_windows_in_one_run_are_refused_before_any_is_stored(monitored: Served) -> None:
    monitored.write(1, training_frame(10, seed=15)[["temp", "season"]])
    with pytest.raises(ValidationFailed, match="over the limit of 100,000 per run"):
        monitored.ws.monitor.run("bike", window="1s", until=DAY + timedelta(days=3))
    assert monitored.ws.monitor.results("bike").empty


RULES = {
    "rules": {"bike-drift": {"when": "drift_share > 0.3 for 2 windows", "notify": ["log"]}},
    "notifiers": {"log": {"kind": "file", "path": "alerts.jsonl"}},
}


@pytest.mark.parametrize("monitored", [{"alerts": RULES}], indirect=True)
def test_rules_are_evaluated_window_by_window_across_runs(monitored: Served) -> None:
    ws = monitored.ws
    frame = training_frame(100, seed=16)[["temp", "season"]]
    for day in range(3):
        monitored.write(24 * day + 1, frame.assign(temp=frame["temp"] + 3))
    ws.monitor.run("bike", until=DAY + timedelta(days=1))
    assert ws.alerts.list() == []  # one window: the rule needs two
    ws.monitor.run("bike", until=DAY + timedelta(days=3))
    [alert] = ws.alerts.list()
    assert alert.state == "firing"
    assert alert.window_end == DAY + timedelta(days=2)  # the second drifted window
    assert [e.type for e in ws.events(types=["alert.fired"])] == ["alert.fired"]
    settle(ws.alerts)  # the courier's thread may be writing the line as deliver() is called
    lines = (ws.settings.home / "alerts.jsonl").read_text().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["rule"] == "drift_share > 0.3 for 2 windows"


CHOSEN = {"numeric_test": "psi", "tests": {"season": "wasserstein"}, "thresholds": {"temp": 50.0}}


@pytest.mark.parametrize("monitored", [{"monitors": {"bike": CHOSEN}}], indirect=True)
def test_tests_and_thresholds_are_chosen_per_feature(monitored: Served) -> None:
    frame = training_frame(300, seed=17)[["temp", "season"]]
    monitored.write(1, frame.assign(temp=frame["temp"] + 5, season=frame["season"] + 2))
    [result] = monitored.ws.monitor.run("bike", until=DAY + timedelta(days=1))
    assert result.drift is not None
    temp, season = result.drift.columns["temp"], result.drift.columns["season"]
    assert (temp.test, temp.threshold, temp.drifted) == ("psi", 50.0, False)
    assert (season.test, season.drifted) == ("wasserstein", True)
    assert result.values["drift.temp"] == temp.statistic
    assert result.values["drift_share"] == 0.5


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    hours=st.lists(st.floats(min_value=0, max_value=95.99), min_size=1, max_size=6),
    window=st.sampled_from(["1h", "6h", "1d", "2d"]),
)
def test_windows_partition_the_logged_rows(
    monitored: Served, hours: list[float], window: str
) -> None:
    name = f"bike-{uuid.uuid4().hex[:8]}"  # a deployment of its own per example
    frame = training_frame(3, seed=18)[["temp", "season"]]
    for hour in hours:
        monitored.write(hour, frame, deployment=name)
    # The end on every window's grid (2 days since the epoch), so no row sits in a window
    # that has not ended: those are scored by a later run.
    two_days = timedelta(days=2)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    until = epoch + -(-(DAY + timedelta(days=4) - epoch) // two_days) * two_days
    scored = monitored.ws.monitor.run(name, window=window, until=until)
    assert sum(r.rows for r in scored) == 3 * len(hours)
    ends = [r.window_end for r in scored]
    assert ends == sorted(ends)
    assert all(b.window_start == a.window_end for a, b in itertools.pairwise(scored))
    assert monitored.ws.monitor.run(name, window=window, until=until) == []
