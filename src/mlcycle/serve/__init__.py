"""Serving: deployments, the model server, the prediction log and feedback."""

from __future__ import annotations

from mlcycle.serve._deployments import (
    Change,
    Deployments,
    check_deployment,
    compose,
    parse_deployments,
)
from mlcycle.serve._sdk import (
    apply,
    current_deployments,
    deploy,
    deployments,
    get_deployment,
    undeploy,
)
from mlcycle.serve._sink import PredictionBatch, PredictionSink

__all__ = [
    "Change",
    "Deployments",
    "PredictionBatch",
    "PredictionSink",
    "apply",
    "check_deployment",
    "compose",
    "current_deployments",
    "deploy",
    "deployments",
    "get_deployment",
    "parse_deployments",
    "undeploy",
]
