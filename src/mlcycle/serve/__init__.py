"""Serving: deployments, the model server, the prediction log and feedback."""

from __future__ import annotations

from typing import Any

from mlcycle.serve._app import ServingApp, create_app
from mlcycle.serve._batch import FILE_SUFFIXES, Scores, batch_score
from mlcycle.serve._deployments import (
    Change,
    Deployments,
    LogSchema,
    check_deployment,
    compose,
    parse_deployments,
)
from mlcycle.serve._errors import MalformedRequest, Overloaded, PayloadTooLarge
from mlcycle.serve._feedback import FeedbackLog, Label, Receipt, feedback_table_name
from mlcycle.serve._metrics import Metrics
from mlcycle.serve._model import ServedModel, load_model
from mlcycle.serve._predictions import (
    aware_utc,
    log_table_name,
    read_log_schema,
    read_predictions,
)
from mlcycle.serve._predlog import PredictionLog, spool_dir
from mlcycle.serve._records import to_record_batch
from mlcycle.serve._routing import implicit_deployment
from mlcycle.serve._sdk import (
    apply,
    current_deployments,
    deploy,
    deployments,
    feedback,
    get_deployment,
    join_labels,
    labelled,
    predictions,
    predictions_table,
    record_feedback,
    score,
    undeploy,
)
from mlcycle.serve._server import FOLLOWED_EVENTS, DeploymentSource, ModelServer
from mlcycle.serve._sink import PredictionBatch, PredictionSink

__all__ = [
    "FILE_SUFFIXES",
    "FOLLOWED_EVENTS",
    "Change",
    "DeploymentSource",
    "Deployments",
    "FeedbackLog",
    "HttpProtocol",
    "Label",
    "LogSchema",
    "MalformedRequest",
    "Metrics",
    "ModelServer",
    "Overloaded",
    "PayloadTooLarge",
    "PredictionBatch",
    "PredictionLog",
    "PredictionSink",
    "Receipt",
    "Scores",
    "ServedModel",
    "ServingApp",
    "apply",
    "aware_utc",
    "batch_score",
    "check_deployment",
    "compose",
    "create_app",
    "current_deployments",
    "deploy",
    "deployments",
    "feedback",
    "feedback_table_name",
    "get_deployment",
    "implicit_deployment",
    "join_labels",
    "labelled",
    "load_model",
    "log_table_name",
    "parse_deployments",
    "predictions",
    "predictions_table",
    "read_log_schema",
    "read_predictions",
    "record_feedback",
    "score",
    "spool_dir",
    "to_record_batch",
    "undeploy",
]


def __getattr__(name: str) -> Any:  # Any: the lazily imported class
    """Import ``HttpProtocol`` (uvicorn's protocol, for ``uvicorn.Config(http=)``) on first use."""
    if name == "HttpProtocol":
        from mlcycle.serve._http import HttpProtocol  # noqa: PLC0415  (imports uvicorn)

        return HttpProtocol
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
