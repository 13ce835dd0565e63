"""A model taking a feature as another kind than its deployment's log holds: refused, not lost.

Each feature is a field of the log's ``inputs`` struct; a Delta table holding
``season`` as a number cannot take a segment holding it as a string.
"""

from __future__ import annotations

import numpy as np

from mlcycle.serve import PredictionBatch, PredictionLog, read_predictions, spool_dir
from mlcycle.serve._predlog import FAILED_SUFFIX
from mlcycle.workspace import Workspace


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
