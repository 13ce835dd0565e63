"""What the prediction log stores for each column type a signature knows, through a real server."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from tests.serve.conftest import client_for

from mlcycle.serve import read_log_schema, read_predictions, spool_dir
from mlcycle.serve._deployments import log_schema
from mlcycle.workspace import Workspace

pytestmark = pytest.mark.anyio


def rides(count: int) -> pd.DataFrame:
    """A date-time, a flag, a word, an integer and a number per ride."""
    index = np.arange(count)
    return pd.DataFrame(
        {
            "when": pd.date_range("2030-01-01 08:00", periods=count, freq="h"),
            "holiday": index % 3 == 0,
            "city": [("lisbon", "porto")[i % 2] for i in index],
            "riders": index.astype(np.int64),
            "temp": np.linspace(0.0, 1.0, count),
        }
    )


def register_flags(workspace: Workspace) -> None:
    """``flags`` version 1: a classifier taking a column of each type ``rides`` has."""
    train = rides(40)
    model = Pipeline(
        [
            (
                "encode",
                ColumnTransformer(
                    [
                        ("words", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                        ("at", "drop", ["when"]),
                    ],
                    remainder="passthrough",
                ),
            ),
            ("fit", LogisticRegression()),
        ]
    )
    model.fit(train, np.where(train["city"] == "lisbon", "busy", "quiet"))
    workspace.registry.register("flags", model, input_example=train.head(5))


RECORDS = [
    {"when": "2030-02-01T09:30:00", "holiday": True, "city": "lisbon", "riders": 7, "temp": 0.5},
    {"when": "2030-02-01T10:45:00", "holiday": False, "city": "porto", "riders": 3, "temp": 0.25},
]


async def test_every_column_type_is_logged_as_sent(workspace: Workspace) -> None:
    register_flags(workspace)
    log = workspace.prediction_log()
    records = RECORDS
    try:
        async with client_for(workspace, "models:/flags/1", sink=log) as (client, _):
            answer = await client.post("/v1/models/flags:predict", json={"instances": records})
        assert answer.status_code == 200, answer.text
    finally:
        log.close()
    table = read_predictions(
        spool_dir=spool_dir(workspace.settings), tables=workspace.artifacts, deployment="flags"
    )
    inputs = table.column("inputs").combine_chunks()
    types = {field.name: field.type for field in inputs.type}
    assert types == {
        "when": pa.timestamp("us"),
        "holiday": pa.bool_(),
        "city": pa.string(),
        "riders": pa.float64(),  # numbers are float64, integers included
        "temp": pa.float64(),
    }
    assert [str(moment) for moment in inputs.field("when").to_pylist()] == [
        "2030-02-01 09:30:00",
        "2030-02-01 10:45:00",
    ]
    assert inputs.field("holiday").to_pylist() == [True, False]
    assert inputs.field("city").to_pylist() == ["lisbon", "porto"]
    assert inputs.field("riders").to_pylist() == [7.0, 3.0]
    assert table.column("output").to_pylist() == answer.json()["predictions"] == ["busy", "quiet"]


async def test_the_log_holds_each_column_as_the_kind_its_signature_says(
    workspace: Workspace,
) -> None:
    """A deployment's log, and the model it logged, agree on every kind (nothing refused)."""
    register_flags(workspace)
    declared = log_schema(workspace.registry.get("flags/1").signature)
    log = workspace.prediction_log(flush_interval_s=1.0)
    try:
        async with client_for(workspace, "models:/flags/1", sink=log) as (client, _):
            answer = await client.post("/v1/models/flags:predict", json={"instances": RECORDS})
            running = log.logged_schema("flags")
        assert answer.status_code == 200, answer.text
    finally:
        log.close()
    stored = read_log_schema(
        "flags", spool_dir=spool_dir(workspace.settings), tables=workspace.artifacts
    )
    assert declared.features == {
        "when": "date-time",
        "holiday": "boolean",
        "city": "string",
        "riders": "number",
        "temp": "number",
    }
    assert declared == running == stored
