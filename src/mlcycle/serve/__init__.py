"""Serving: deployments, the model server, the prediction log and feedback."""

from __future__ import annotations

from mlcycle.serve._app import create_app
from mlcycle.serve._errors import MalformedRequest, Overloaded, PayloadTooLarge
from mlcycle.serve._metrics import Metrics
from mlcycle.serve._model import ServedModel, load_model
from mlcycle.serve._routing import check_deployment, implicit_deployment
from mlcycle.serve._server import FOLLOWED_EVENTS, DeploymentSource, ModelServer
from mlcycle.serve._sink import PredictionBatch, PredictionSink

__all__ = [
    "FOLLOWED_EVENTS",
    "DeploymentSource",
    "MalformedRequest",
    "Metrics",
    "ModelServer",
    "Overloaded",
    "PayloadTooLarge",
    "PredictionBatch",
    "PredictionSink",
    "ServedModel",
    "check_deployment",
    "create_app",
    "implicit_deployment",
    "load_model",
]
