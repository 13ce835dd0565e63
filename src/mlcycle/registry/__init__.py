"""The model registry: safe model formats, signatures, aliases with history, gates and cards."""

from __future__ import annotations

from mlcycle.registry._aliases import evaluation_passed, failed_gates
from mlcycle.registry._card import ModelCard
from mlcycle.registry._evaluate import GateInputs, evaluate_gates, fit_baseline
from mlcycle.registry._flavor import Flavor, LoadedModel
from mlcycle.registry._flavors import ENTRY_POINT_GROUP, flavor_for, get_flavor, known_flavors
from mlcycle.registry._gates import Evaluation, GateResult, SliceMetrics
from mlcycle.registry._lightgbm import LightGBMFlavor
from mlcycle.registry._mlflow import read_mlflow_model, write_mlflow_model
from mlcycle.registry._onnx import OnnxFlavor, convert_to_onnx
from mlcycle.registry._pyfunc import PyfuncFlavor
from mlcycle.registry._registry import ModelRegistry
from mlcycle.registry._scoring import CLASSIFICATION_METRICS, REGRESSION_METRICS, compute_metrics
from mlcycle.registry._sdk import (
    card,
    current_registry,
    evaluate,
    export_mlflow,
    gate_results,
    get,
    history,
    import_mlflow,
    input_example,
    load,
    models,
    promote,
    register,
    rollback,
    rollback_target,
    update,
    versions,
)
from mlcycle.registry._signature import ColumnSpec, Signature, infer_signature
from mlcycle.registry._sklearn import ALLOWED_TYPES, ESTIMATOR_FAMILIES, SklearnFlavor
from mlcycle.registry._trust import is_trusted, require_trust
from mlcycle.registry._xgboost import XGBoostFlavor

__all__ = [
    "ALLOWED_TYPES",
    "CLASSIFICATION_METRICS",
    "ENTRY_POINT_GROUP",
    "ESTIMATOR_FAMILIES",
    "REGRESSION_METRICS",
    "ColumnSpec",
    "Evaluation",
    "Flavor",
    "GateInputs",
    "GateResult",
    "LightGBMFlavor",
    "LoadedModel",
    "ModelCard",
    "ModelRegistry",
    "OnnxFlavor",
    "PyfuncFlavor",
    "Signature",
    "SklearnFlavor",
    "SliceMetrics",
    "XGBoostFlavor",
    "card",
    "compute_metrics",
    "convert_to_onnx",
    "current_registry",
    "evaluate",
    "evaluate_gates",
    "evaluation_passed",
    "export_mlflow",
    "failed_gates",
    "fit_baseline",
    "flavor_for",
    "gate_results",
    "get",
    "get_flavor",
    "history",
    "import_mlflow",
    "infer_signature",
    "input_example",
    "is_trusted",
    "known_flavors",
    "load",
    "models",
    "promote",
    "read_mlflow_model",
    "register",
    "require_trust",
    "rollback",
    "rollback_target",
    "update",
    "versions",
    "write_mlflow_model",
]
