"""Feedback: labels recorded and joined from data, the last one winning, read with predictions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlcycle as mc
from mlcycle.clock import SimulatedClock
from mlcycle.errors import ValidationFailed
from mlcycle.serve import FeedbackLog, PredictionBatch, Receipt, feedback_table_name
from mlcycle.store import Deployment, LocalArtifactStore, Variant
from mlcycle.workspace import Workspace

T0 = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


def _batch(ids: list[str], hours: list[int], *, variant: str = "primary") -> PredictionBatch:
    return PredictionBatch(
        deployment="bike-demand",
        model="bike-demand",
        model_version=2 if variant == "shadow" else 1,
        variant=variant,
        shadow=variant == "shadow",
        request_ids=ids,
        row_indexes=[0] * len(ids),
        times=[T0.timestamp()] * len(ids),
        latency_ms=[1.0] * len(ids),
        inputs={"station": [1] * len(ids), "hr": hours, "temp": np.full(len(ids), 0.5)},
        outputs=np.asarray(hours, dtype=np.float64) * 2,
    )


@pytest.fixture
def clock(tmp_path: Path) -> SimulatedClock:
    found = SimulatedClock(tmp_path / "clock.json")
    found.set(T0 + timedelta(minutes=30))
    return found


@pytest.fixture
def log(tmp_path: Path, clock: SimulatedClock) -> FeedbackLog:
    """A feedback log over a prediction log holding r0..r3 (hours 0..3) and a shadow copy of r0."""
    tables = LocalArtifactStore(root=tmp_path / "artifacts")
    spool = tmp_path / "spool"
    from mlcycle.serve import PredictionLog

    predictions = PredictionLog(spool_dir=spool, tables=tables)
    predictions.append(_batch(["r0", "r1", "r2", "r3"], [0, 1, 2, 3]))
    predictions.append(_batch(["r0"], [0], variant="shadow"))
    predictions.close()
    return FeedbackLog(tables=tables, spool_dir=spool, clock=clock)


def _deployment(*keys: str) -> Deployment:
    return Deployment(
        name="bike-demand",
        policy="single",
        variants=(Variant(name="primary", model="bike-demand@production"),),
        key_columns=keys,
    )


def test_labels_are_stored_and_unknown_request_ids_reported(log: FeedbackLog) -> None:
    receipt = log.record("bike-demand", [("r0", 10.0), ("r1", 0, 11), ("nobody", 3.0)])
    assert receipt == Receipt(recorded=3, unknown=("nobody",))
    read = log.read("bike-demand").to_pylist()
    assert [(row["request_id"], row["label"], row["source"]) for row in read] == [
        ("nobody", 3.0, "api"),
        ("r0", 10.0, "api"),
        ("r1", 11.0, "api"),
    ]
    assert len({row["labelled_at"] for row in read}) == 1  # one call, one time
    assert T0 + timedelta(minutes=30) <= read[0]["labelled_at"] < T0 + timedelta(minutes=31)


def test_the_last_label_recorded_wins(log: FeedbackLog, clock: SimulatedClock) -> None:
    log.record("bike-demand", [("r0", 1.0), ("r0", 2.0)])
    clock.advance(timedelta(minutes=5))
    log.record("bike-demand", [("r0", 3.0), ("r1", 4.0)])
    clock.advance(timedelta(minutes=5))
    log.record("bike-demand", [("r1", 5.0)])
    read = log.read("bike-demand")
    assert dict(zip(read["request_id"].to_pylist(), read["label"].to_pylist(), strict=True)) == {
        "r0": 3.0,
        "r1": 5.0,
    }
    since = T0 + timedelta(minutes=38)
    assert log.read("bike-demand", since=since)["request_id"].to_pylist() == ["r1"]
    assert log.read("bike-demand", until=since)["request_id"].to_pylist() == ["r0"]


def test_labelled_puts_each_prediction_next_to_its_label_and_delay(log: FeedbackLog) -> None:
    log.record("bike-demand", [("r0", 7.0), ("r2", 9.0)])
    table = log.labelled("bike-demand")
    rows = {(r["request_id"], r["variant"]): r for r in table.to_pylist()}
    assert len(rows) == table.num_rows == 5
    assert rows["r0", "primary"]["label"] == 7.0
    assert rows["r0", "shadow"]["label"] == 7.0  # the shadow's copy is scored on the same label
    assert 1800 <= rows["r0", "primary"]["label_delay_s"] < 1860  # the clock ran on a little
    assert rows["r2", "primary"]["inputs"]["hr"] == 2.0
    assert rows["r1", "primary"]["label"] is None
    assert rows["r1", "primary"]["label_delay_s"] is None
    assert log.labelled("bike-demand", variant="shadow").num_rows == 1


def test_labels_join_from_data_on_the_key_columns(log: FeedbackLog) -> None:
    data = pa.table(
        {
            "station": [1, 1, 1, 2],
            "hr": [0, 1, 2, 0],
            "cnt": pa.array([40, 41, None, 99], pa.int64()),
        }
    )
    receipt = log.join(
        _deployment("station", "hr"), data, label_column="cnt", source="data:/bike/5"
    )
    assert receipt == Receipt(recorded=2, unmatched=2)  # r2's label is null, r3 has no row
    read = log.read("bike-demand")
    assert read["request_id"].to_pylist() == ["r0", "r1"]
    assert read["label"].to_pylist() == [40.0, 41.0]
    assert set(read["source"].to_pylist()) == {"data:/bike/5"}


def test_the_sdk_records_joins_and_reads(bike_models: Workspace, hours: pd.DataFrame) -> None:
    workspace = bike_models
    workspace.deployments.deploy(
        "bike-demand", model="bike-demand@production", key_columns=["station", "hr"]
    )
    predictions = workspace.prediction_log()
    predictions.append(_batch(["a", "b"], [5, 6]))
    predictions.close()
    labels = pd.DataFrame({"station": [1, 1], "hr": [5, 6], "cnt": [50.0, 60.0]})
    version = workspace.data.register("bike-labels", labels, validate=False)
    try:
        assert mc.serve.record_feedback("bike-demand", [("a", 1.0)]).recorded == 1
        joined = mc.serve.join_labels("bike-demand", version.ref, label_column="cnt")
        assert joined == Receipt(recorded=2)
        frame = mc.serve.labelled("bike-demand")
        assert list(frame["label"]) == [50.0, 60.0]
        assert list(frame["inputs.hr"]) == [5.0, 6.0]
        assert list(mc.serve.feedback("bike-demand")["source"]) == [version.ref, version.ref]
    finally:
        mc.close()


def test_the_sdk_refuses_a_dataset_whose_key_is_text_for_a_logged_number(
    bike_models: Workspace,
) -> None:
    workspace = bike_models
    workspace.deployments.deploy(
        "bike-demand", model="bike-demand@production", key_columns=["station", "hr"]
    )
    predictions = workspace.prediction_log()
    predictions.append(_batch(["a"], [5]))
    predictions.close()
    labels = pd.DataFrame({"station": [1], "hr": ["5"], "cnt": [50.0]})
    version = workspace.data.register("bike-labels", labels, validate=False)
    try:
        with pytest.raises(ValidationFailed, match=f"key column 'hr' of {version.ref} is "):
            mc.serve.join_labels("bike-demand", version.ref, label_column="cnt")
        assert len(mc.serve.feedback("bike-demand")) == 0
    finally:
        mc.close()


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ([], "no labels given"),
        ("r0", "must be a list"),
        ([("r0",)], "give (request_id, label)"),
        ([("", 1.0)], "request_id must be a non-empty string"),
        ([("r" * 201, 1.0)], "at most 200 characters"),
        ([("r0", -1, 1.0)], "row_index must be an integer from 0 to 2,147,483,647"),
        ([("r0", True, 1.0)], "row_index must be an integer from 0"),
        ([("r0", 2**31, 1.0)], "not 2147483648"),
        ([("r0", None)], "must be a number, a boolean or a string"),
        ([("r0", [1, 2])], "must be a number, a boolean or a string"),
        ([("r0", float("nan"))], "labels must be finite"),
        (
            [("r0", 2**53 + 1)],
            r"the label 9007199254740993 is past 2\*\*53; numeric labels are stored as float64",
        ),
        ([("r0", 1.0), ("r1", "high")], "mix numbers and strings"),
    ],
)
def test_bad_labels_are_refused_and_nothing_is_stored(
    log: FeedbackLog, labels: object, problem: str
) -> None:
    with pytest.raises(ValidationFailed, match=problem.replace("(", r"\(").replace(")", r"\)")):
        log.record("bike-demand", labels)  # type: ignore[arg-type]
    assert log.read("bike-demand").num_rows == 0


def test_a_deployment_keeps_one_kind_of_label(log: FeedbackLog) -> None:
    log.record("bike-demand", [("r0", 1.0)])
    with pytest.raises(ValidationFailed, match="has numeric labels; these are text"):
        log.record("bike-demand", [("r1", "high")])
    assert log.read("bike-demand")["label"].to_pylist() == [1.0]


def test_text_labels_are_kept_as_text(log: FeedbackLog) -> None:
    log.record("bike-demand", [("r0", "low"), ("r1", "high")])
    assert log.labelled("bike-demand")["label"].to_pylist() == ["low", "low", "high", None, None]


def test_bad_joins_are_refused_and_nothing_is_stored(log: FeedbackLog) -> None:
    data = pa.table({"station": [1, 1], "hr": [0, 0], "cnt": [1, 2], "day": ["a", "b"]})
    cases = [
        (_deployment(), "cnt", "has no key columns to join labels on"),
        (_deployment("station", "hr"), "count", r"has no column\(s\) \['count'\]"),
        (_deployment("station", "day"), "cnt", r"\['day'\] .* are not inputs"),
        (_deployment("station", "hr"), "cnt", "key\\(s\\) on more than one row"),
    ]
    for deployment, label, problem in cases:
        with pytest.raises(ValidationFailed, match=problem):
            log.join(deployment, data, label_column=label, source="data:/bike/5")
    assert log.read("bike-demand").num_rows == 0
    assert not Path(log.tables.table_uri(feedback_table_name("bike-demand"))).exists()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    calls=st.lists(
        st.lists(st.tuples(st.sampled_from(["r0", "r1", "r2"]), st.integers(0, 99)), min_size=1),
        min_size=1,
        max_size=4,
    )
)
def test_reading_gives_the_label_recorded_last(
    tmp_path_factory: pytest.TempPathFactory, calls: list[list[tuple[str, int]]]
) -> None:
    root = tmp_path_factory.mktemp("feedback")
    clock = SimulatedClock(root / "clock.json")
    clock.set(T0)
    log = FeedbackLog(
        tables=LocalArtifactStore(root=root / "artifacts"), spool_dir=root / "spool", clock=clock
    )
    expected: dict[str, float] = {}
    for call in calls:
        log.record("bike-demand", call)
        expected.update((request_id, float(label)) for request_id, label in call)
        clock.advance(timedelta(seconds=1))
    read = log.read("bike-demand")
    assert dict(zip(read["request_id"].to_pylist(), read["label"].to_pylist(), strict=True)) == (
        expected
    )


def test_labelled_on_a_deployment_with_no_predictions_yet_is_empty(tmp_path: Path) -> None:
    tables = LocalArtifactStore(root=tmp_path / "artifacts")
    clock = SimulatedClock(tmp_path / "clock.json")
    log = FeedbackLog(tables=tables, spool_dir=tmp_path / "spool", clock=clock)
    found = log.labelled("bike-demand", since=T0)
    assert found.num_rows == 0
    assert {"label", "labelled_at", "label_delay_s"} <= set(found.column_names)


def test_known_ids_come_from_the_table_and_unrolled_segments_and_exclude_failures(
    log: FeedbackLog,
) -> None:
    """``record`` reads only the ids it was given: rolled rows, rows still in a spool segment,
    and never a failed request's row."""
    from mlcycle.serve import PredictionLog

    live = PredictionLog(spool_dir=log.spool_dir, tables=log.tables)
    try:
        live.append(_batch(["spooled"], [4]))
        live.append(replace(_batch(["failed"], [0]), inputs={}, outputs=[], error="422: bad"))
        live.flush()
        receipt = log.record(
            "bike-demand", [("r3", 1.0), ("spooled", 2.0), ("failed", 3.0), ("r9", 4.0)]
        )
    finally:
        live.close()
    assert receipt == Receipt(recorded=4, unknown=("failed", "r9"))
    assert log.record("bike-demand", [("spooled", 5.0)]) == Receipt(recorded=1)


def _dated(log: FeedbackLog) -> Deployment:
    """Predictions d0, d1 of 'bike-days', keyed on a date-time input logged as timestamp[us]."""
    from mlcycle.serve import PredictionLog

    at = np.array(["2030-05-01T00:00", "2030-05-02T00:00"], dtype="datetime64[us]")
    predictions = PredictionLog(spool_dir=log.spool_dir, tables=log.tables)
    predictions.append(
        replace(_batch(["d0", "d1"], [0, 1]), deployment="bike-days", inputs={"at": at})
    )
    predictions.close()
    return replace(_deployment("at"), name="bike-days")


@pytest.mark.parametrize(
    "at",
    [
        pa.array(np.array(["2030-05-01", "2030-05-02"], dtype="datetime64[ns]")),
        pa.array(np.array(["2030-05-01", "2030-05-02"], dtype="datetime64[D]")),  # date32
    ],
)
def test_a_key_of_another_type_that_holds_the_logged_values_exactly_is_cast(
    log: FeedbackLog, at: pa.Array
) -> None:
    deployment = _dated(log)
    data = pa.table({"at": at, "cnt": [5.0, 6.0]})
    receipt = log.join(deployment, data, label_column="cnt", source="data:/bike/6")
    assert receipt == Receipt(recorded=2)
    assert log.read("bike-days")["label"].to_pylist() == [5.0, 6.0]


@pytest.mark.parametrize(
    ("column", "values", "problem"),
    [
        ("hr", pa.array(["0", "1"]), r"'hr' of data:/bike/6 is string, but deployment "),
        ("hr", pa.array([T0, T0 + timedelta(hours=1)]), r"'hr' .* is timestamp\[us, tz=UTC\]"),
        ("hr", pa.array([0, 2**53 + 1]), r"'hr' .* has values double cannot hold exactly"),
        ("at", pa.array([T0, T0 + timedelta(days=1)]), r"'bike-days' logs it as timestamp\[us\]"),
        ("at", pa.array([1, 1001], pa.timestamp("ns")), r"has values timestamp\[us\] cannot hold"),
    ],
)
def test_a_key_of_another_type_is_refused_naming_the_column_the_types_and_the_fix(
    log: FeedbackLog, column: str, values: pa.Array, problem: str
) -> None:
    deployment = _dated(log) if column == "at" else _deployment("station", "hr")
    data = pa.table({"station": [1, 1], column: values, "cnt": [5.0, 6.0]})
    with pytest.raises(ValidationFailed, match=problem) as refused:
        log.join(deployment, data, label_column="cnt", source="data:/bike/6")
    assert str(refused.value).endswith("and register the data again")
    assert log.read(deployment.name).num_rows == 0


def test_boolean_labels_are_stored_as_one_and_zero(log: FeedbackLog) -> None:
    """A boolean target is a two-class one: stored as numbers, monitoring scores it as such."""
    data = pa.table({"station": [1, 1], "hr": [0, 1], "rented": [True, False]})
    receipt = log.join(
        _deployment("station", "hr"), data, label_column="rented", source="data:/bike/7"
    )
    assert receipt == Receipt(recorded=2, unmatched=2)
    assert log.record("bike-demand", [("r2", True), ("r3", 0, False)]) == Receipt(recorded=2)
    assert log.read("bike-demand")["label"].to_pylist() == [1.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize(
    ("label", "problem"),
    [
        (pa.array([T0, T0]), r"'cnt' of data:/bike/7 is timestamp\[us, tz=UTC\]; labels must be"),
        (pa.array([1, 2**53 + 1]), "label column 'cnt' of data:/bike/7 has values float64 cannot"),
    ],
)
def test_a_label_column_the_log_cannot_store_is_refused_naming_it_and_the_fix(
    log: FeedbackLog, label: pa.Array, problem: str
) -> None:
    data = pa.table({"station": [1, 1], "hr": [0, 1], "cnt": label})
    with pytest.raises(ValidationFailed, match=problem) as refused:
        log.join(_deployment("station", "hr"), data, label_column="cnt", source="data:/bike/7")
    assert str(refused.value).endswith("and register the data again")
    assert log.read("bike-demand").num_rows == 0


def test_a_join_with_no_predictions_logged_stores_nothing_and_still_checks_the_data(
    log: FeedbackLog,
) -> None:
    """Labels are stored under request ids: with no logged prediction, there is none to use."""
    data = pa.table({"station": [1, 1], "hr": [0, 1], "cnt": [40, 41]})
    keyed = _deployment("station", "hr")
    later = T0 + timedelta(hours=1)
    receipt = log.join(keyed, data, label_column="cnt", source="data:/bike/5", since=later)
    assert receipt == Receipt(recorded=0)
    unserved = replace(keyed, name="bike-new")
    assert log.join(unserved, data, label_column="cnt", source="data:/bike/5") == Receipt(0)
    with pytest.raises(ValidationFailed, match="key\\(s\\) on more than one row"):
        log.join(unserved, data.take([0, 0]), label_column="cnt", source="data:/bike/5")
    assert not Path(log.tables.table_uri(feedback_table_name("bike-demand"))).exists()
    assert not Path(log.tables.table_uri(feedback_table_name("bike-new"))).exists()


def test_rows_of_the_data_without_a_key_label_nothing(log: FeedbackLog) -> None:
    """A missing key (null, NaN) matches no prediction, so its rows are not repeated keys."""
    data = pa.table(
        {
            "station": [1, 1, 1, 1, 1, None],
            "hr": pa.array([0.0, None, None, float("nan"), float("nan"), 3.0]),
            "cnt": [40, 41, 42, 43, 44, 45],
        }
    )
    receipt = log.join(
        _deployment("station", "hr"), data, label_column="cnt", source="data:/bike/5"
    )
    assert receipt == Receipt(recorded=1, unmatched=3)
    assert log.read("bike-demand")["label"].to_pylist() == [40.0]


@pytest.mark.parametrize("column", ["hr", "cnt"])
def test_a_key_or_label_column_of_nulls_only_labels_nothing(log: FeedbackLog, column: str) -> None:
    data = pa.table({"station": [1, 1], "hr": [0, 1], "cnt": [40.0, 41.0]})
    data = data.set_column(data.schema.get_field_index(column), column, pa.nulls(2))
    receipt = log.join(
        _deployment("station", "hr"), data, label_column="cnt", source="data:/bike/5"
    )
    assert receipt == Receipt(recorded=0, unmatched=4)


def test_category_columns_join_and_label_by_their_values(log: FeedbackLog) -> None:
    data = pa.table(
        {
            "station": [1, 1],
            "hr": pa.array([0, 1]).dictionary_encode(),
            "level": pa.array(["low", "high"]).dictionary_encode(),
        }
    )
    receipt = log.join(
        _deployment("station", "hr"), data, label_column="level", source="data:/bike/8"
    )
    assert receipt == Receipt(recorded=2, unmatched=2)
    assert log.read("bike-demand")["label"].to_pylist() == ["low", "high"]
