"""One window scored from log rows: skew, schema violations and stability on odd inputs."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlcycle.monitor import ReferenceStats
from mlcycle.monitor._window import ModelFacts, score_window, slice_label
from mlcycle.serve import PredictionBatch, to_record_batch
from mlcycle.settings import MonitorSettings

END = datetime(2030, 5, 2, tzinfo=UTC)
LABELS = pa.schema(
    [
        pa.field("request_id", pa.string()),
        pa.field("row_index", pa.int32()),
        pa.field("label", pa.float64()),
        pa.field("labelled_at", pa.timestamp("us", tz="UTC")),
    ]
)


def _rows(inputs: dict[str, list[object]], outputs: list[object]) -> pa.Table:
    count = len(outputs)
    batch = PredictionBatch(
        deployment="d",
        model="m",
        model_version=1,
        variant="primary",
        shadow=False,
        request_ids=[f"r{n}" for n in range(count)],
        row_indexes=[0] * count,
        times=[END.timestamp() - 3600] * count,
        latency_ms=[1.0] * count,
        inputs=inputs,
        outputs=outputs,
    )
    return pa.Table.from_batches([to_record_batch([batch])])


def _facts(reference: ReferenceStats, **inputs: tuple[str, bool]) -> ModelFacts:
    return ModelFacts("models:/m/1", None, None, inputs, None, reference, None)


def test_text_where_training_had_numbers_is_skew_and_violations_not_a_failure() -> None:
    reference = ReferenceStats.from_frame(
        pd.DataFrame({"temp": np.linspace(0, 1, 100), "kind": ["a", "b"] * 50})
    )
    rows = _rows({"temp": ["warm"] * 4, "kind": ["a", "a", "z", "z"]}, [1.0, 2.0, 3.0, 4.0])
    facts = _facts(
        reference, temp=("float64", False), kind=("string", False), hum=("float64", True)
    )
    values, report = score_window(
        rows,
        end=END,
        model=facts,
        config=MonitorSettings(),
        labels=LABELS.empty_table(),
        features=["temp", "kind"],
    )
    assert report is not None
    assert list(report.columns) == ["kind"]  # temp is not comparable: left to skew
    assert values["skew_share"] == 1.0  # temp is text; kind has a category training never had
    assert values["schema_violations"] == 8  # temp as text (4 rows), hum missing (4 rows)
    assert values["drifted.kind"] == 1.0
    assert values["labelled_rows"] == 0
    assert values["label_delay_hours"] is None
    assert values["prediction_drift"] is None  # no output reference yet


def test_missing_values_above_training_s_share_are_skew() -> None:
    reference = ReferenceStats.from_frame(pd.DataFrame({"hum": np.linspace(0, 1, 100)}))
    rows = _rows({"hum": [0.5, None, None, 0.4]}, [[1.0, 2.0], [np.nan, 0.0], None, [0.0, 1.0]])
    values, _report = score_window(
        rows,
        end=END,
        model=_facts(reference, hum=("float64", True)),
        config=MonitorSettings(),
        labels=LABELS.empty_table(),
        features=["hum"],
    )
    assert values["skew_share"] == 1.0
    assert values["schema_violations"] == 0  # hum is nullable
    assert values["nan_inputs"] == 2
    assert values["nan_outputs"] == 2  # a list holding NaN, and a missing list


@pytest.mark.parametrize(
    ("value", "shown"), [(1.0, "season=1"), (1.5, "season=1.5"), ("spring", "season=spring")]
)
def test_slice_labels_drop_a_whole_number_s_point(value: object, shown: str) -> None:
    assert slice_label("season", value) == shown
