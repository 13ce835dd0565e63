"""A model taking a feature as another kind than its deployment's log holds: refused, not lost.

Each feature is a field of the log's ``inputs`` struct; a Delta table holding
``season`` as a number cannot take a segment holding it as a string.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from tests.serve.conftest import failed_request

from mlcycle.errors import ValidationFailed
from mlcycle.serve import (
    LogSchema,
    PredictionBatch,
    PredictionLog,
    read_log_schema,
    read_predictions,
    spool_dir,
)
from mlcycle.serve._predlog import FAILED_SUFFIX
from mlcycle.workspace import Workspace

SEASONS = np.array(["winter", "spring", "summer", "autumn"], dtype=object)


def register_seasons(workspace: Workspace, hours: pd.DataFrame, *, feature: str = "season") -> None:
    """``bike-season`` 1 takes ``feature`` as a number (1 to 4), version 2 as a string."""
    numbers = hours[["hr", "temp"]].assign(**{feature: hours["hr"] % 4 + 1.0})
    workspace.registry.register(
        "bike-season", Ridge().fit(numbers, hours["cnt"]), input_example=numbers.head(5)
    )
    words = numbers.assign(**{feature: SEASONS[hours["hr"] % 4]})
    encode = ColumnTransformer(
        [("words", OneHotEncoder(handle_unknown="ignore"), [feature])], remainder="passthrough"
    )
    model = Pipeline([("encode", encode), ("fit", Ridge())]).fit(words, hours["cnt"])
    workspace.registry.register("bike-season", model, input_example=words.head(5))


def log_inputs(
    log: PredictionLog, deployment: str, inputs: dict[str, np.ndarray], *, request: str = "r1"
) -> None:
    """Log one answered request of ``inputs`` (a column each), predicting 1.0 a row."""
    count = len(next(iter(inputs.values())))
    log.append(
        PredictionBatch(
            deployment=deployment,
            model="earlier",
            model_version=1,
            variant="primary",
            shadow=False,
            request_ids=[request] * count,
            row_indexes=list(range(count)),
            times=[1.9e9] * count,
            latency_ms=[1.0] * count,
            inputs=inputs,
            outputs=np.ones(count),
        )
    )


def failed(workspace: Workspace) -> list[str]:
    return [path.name for path in spool_dir(workspace.settings).rglob(f"*{FAILED_SUFFIX}")]


def logged(workspace: Workspace, deployment: str) -> list[dict[str, object]]:
    table = read_predictions(
        spool_dir=spool_dir(workspace.settings), tables=workspace.artifacts, deployment=deployment
    )
    return list(table.column("inputs").to_pylist())


def test_a_segment_taking_a_feature_as_another_kind_is_set_aside_by_the_table(
    workspace: Workspace,
) -> None:
    """Why the log's kinds are checked before serving: the table refuses such rows."""
    log = workspace.prediction_log()
    log_inputs(log, "bikes", {"season": np.array([1.0, 2.0])})
    log.close()
    log = workspace.prediction_log()
    log_inputs(log, "bikes", {"season": np.array(["winter", "spring"], dtype=object)})
    log.close()
    assert len(failed(workspace)) == 1
    assert logged(workspace, "bikes") == [{"season": 1.0}, {"season": 2.0}]


def test_a_feature_new_or_missing_is_merged_into_the_table(workspace: Workspace) -> None:
    """Delta's schema merge adds struct fields, and an older or newer row reads them as null."""
    odd = "sea son é"
    for request, inputs in enumerate(
        (
            {"season": np.array([1.0]), "hr": np.array([7.0])},
            {"hr": np.array([8.0]), odd: np.array(["x"], dtype=object)},
            {odd: np.array(["y"], dtype=object), "season": np.array([3.0])},
        )
    ):
        log = workspace.prediction_log()
        log_inputs(log, "bikes", inputs, request=f"r{request}")
        log.close()
    assert failed(workspace) == []
    assert logged(workspace, "bikes") == [
        {"season": 1.0, "hr": 7.0, odd: None},
        {"season": None, "hr": 8.0, odd: "x"},
        {"season": 3.0, "hr": None, odd: "y"},
    ]


@pytest.mark.parametrize("where", ["table", "spool"])
def test_a_model_taking_a_feature_as_another_kind_than_the_log_holds_is_refused(
    workspace: Workspace, hours: pd.DataFrame, where: str
) -> None:
    register_seasons(workspace, hours)
    log = workspace.prediction_log()
    try:
        log_inputs(log, "bikes", {"season": np.array([1.0, 2.0]), "hr": np.array([7.0, 8.0])})
        if where == "table":
            log.close()  # rolled over into the Delta table
        else:
            log.flush()  # written to a segment in the spool
        expected = (
            r"deployment 'bikes': variant primary \(bike-season/2\) takes feature 'season' as "
            r"a string, but the deployment's prediction log holds it as a number .* serve that "
            r"model as a deployment of another name, or move the alias back to a model taking "
            r"'season' as a number"
        )
        with pytest.raises(ValidationFailed, match=expected):
            workspace.deployments.deploy("bikes", model="bike-season/2")
        assert workspace.deployments.list() == []
        workspace.deployments.deploy("bikes", model="bike-season/1")  # temp: a new feature
        workspace.deployments.deploy("other", model="bike-season/2")  # a log of its own
    finally:
        log.close()
    assert failed(workspace) == []


KINDS = pytest.mark.parametrize(
    ("values", "kind"),
    [
        (np.array([1.0, 2.0]), "number"),
        (np.array(["winter", None], dtype=object), "string"),
        (np.array([True, False]), "boolean"),
        (np.array(["2030-01-01T08:00", "NaT"], dtype="datetime64[us]"), "date-time"),
    ],
    ids=["number", "string", "boolean", "date-time"],
)


@KINDS
def test_the_log_tells_each_features_kind_from_its_queue_on(
    workspace: Workspace, values: np.ndarray, kind: str
) -> None:
    log = workspace.prediction_log(flush_interval_s=1.0)
    try:
        assert log.logged_schema("bikes") == LogSchema()
        log_inputs(log, "bikes", {"season": values})
        queued = log.logged_schema("bikes").features
        log.flush()
        written = log.logged_schema("bikes").features
    finally:
        log.close()
    stored = read_log_schema(
        "bikes", spool_dir=spool_dir(workspace.settings), tables=workspace.artifacts
    )
    assert queued == written == stored.features == {"season": kind}
    assert stored.output == "one number a row"
    assert log.logged_schema("other") == LogSchema()


def test_variants_taking_a_feature_as_different_kinds_are_refused(
    bike_models: Workspace, hours: pd.DataFrame
) -> None:
    register_seasons(bike_models, hours)
    expected = (
        r"deployment 'bikes': its variants take feature 'season' as different kinds "
        r"\(primary \(bike-season/1\): a number, (canary|shadow) \(bike-season/2\): a string\), "
        r"whose rows cannot share one prediction log; serve them as separate deployments"
    )
    with pytest.raises(ValidationFailed, match=expected):
        bike_models.deployments.deploy("bikes", model="bike-season/1", canary={"bike-season/2": 10})
    with pytest.raises(ValidationFailed, match=expected):
        bike_models.deployments.deploy("bikes", model="bike-season/1", shadow=["bike-season/2"])
    assert bike_models.deployments.list() == []
    # Features some variants do not take are fine: bike-demand takes station, not season.
    bike_models.deployments.deploy("bikes", model="bike-season/1", canary={"bike-demand/1": 10})
    bike_models.deployments.deploy("words", model="bike-season/2", shadow=["bike-demand/1"])


def test_a_feature_of_an_odd_name_is_checked_through_the_table(
    workspace: Workspace, hours: pd.DataFrame
) -> None:
    odd = "sea son é 季節"
    register_seasons(workspace, hours, feature=odd)
    log = workspace.prediction_log()
    log_inputs(log, "bikes", {odd: np.array([1.0]), "hr": np.array([7.0])})
    log.close()
    with pytest.raises(ValidationFailed, match=f"takes feature '{odd}' as a string, but"):
        workspace.deployments.deploy("bikes", model="bike-season/2")
    workspace.deployments.deploy("bikes", model="bike-season/1")
    assert failed(workspace) == []


def test_a_table_of_failed_requests_only_holds_no_kind_until_answers_come(
    workspace: Workspace, hours: pd.DataFrame
) -> None:
    register_seasons(workspace, hours)
    log = workspace.prediction_log()
    log.append(failed_request("bikes", "r0"))
    log.close()  # a table with an error column, and no inputs or output
    where = {"spool_dir": spool_dir(workspace.settings), "tables": workspace.artifacts}
    assert read_log_schema("bikes", **where) == LogSchema()
    workspace.deployments.deploy("bikes", model="bike-season/2")
    log = workspace.prediction_log()
    log_inputs(log, "bikes", {"season": np.array(["winter"], dtype=object)})
    log.close()
    assert read_log_schema("bikes", **where).features == {"season": "string"}
    with pytest.raises(ValidationFailed, match="takes feature 'season' as a number, but"):
        workspace.deployments.deploy("bikes", model="bike-season/1")
    assert failed(workspace) == []


def test_a_boolean_missing_in_every_row_of_a_batch_leaves_the_tables_kind(
    workspace: Workspace,
) -> None:
    """Such a batch's column is written as strings (its values came as objects); Delta takes
    its nulls, so the log still holds the feature as the table's booleans."""
    log = workspace.prediction_log()
    log_inputs(log, "bikes", {"flag": np.array([True, False])}, request="r0")
    log.close()
    log = workspace.prediction_log(flush_interval_s=1.0)
    try:
        log_inputs(log, "bikes", {"flag": np.array([None, None], dtype=object)})
        queued = log.logged_schema("bikes").features
        log.flush()
        written = log.logged_schema("bikes").features
    finally:
        log.close()
    assert queued == written == {"flag": "boolean"}
    assert failed(workspace) == []
    assert [row["flag"] for row in logged(workspace, "bikes")] == [True, False, None, None]
