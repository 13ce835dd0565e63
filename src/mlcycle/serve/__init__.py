"""Serving: deployments, the model server, the prediction log and feedback."""

from __future__ import annotations

from mlcycle.serve._deployments import (
    Change,
    Deployments,
    check_deployment,
    compose,
    parse_deployments,
)
from mlcycle.serve._predlog import (
    PredictionLog,
    log_table_name,
    read_predictions,
    spool_dir,
    to_record_batch,
)
from mlcycle.serve._sdk import (
    apply,
    current_deployments,
    deploy,
    deployments,
    get_deployment,
    predictions,
    predictions_table,
    undeploy,
)
from mlcycle.serve._sink import PredictionBatch, PredictionSink

__all__ = [
    "Change",
    "Deployments",
    "PredictionBatch",
    "PredictionLog",
    "PredictionSink",
    "apply",
    "check_deployment",
    "compose",
    "current_deployments",
    "deploy",
    "deployments",
    "get_deployment",
    "log_table_name",
    "parse_deployments",
    "predictions",
    "predictions_table",
    "read_predictions",
    "spool_dir",
    "to_record_batch",
    "undeploy",
]
