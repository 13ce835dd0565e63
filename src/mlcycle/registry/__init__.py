"""The model registry: safe model formats, signatures, aliases with history, gates and cards."""

from __future__ import annotations

from mlcycle.registry._flavor import Flavor, LoadedModel
from mlcycle.registry._flavors import ENTRY_POINT_GROUP, flavor_for, get_flavor, known_flavors
from mlcycle.registry._lightgbm import LightGBMFlavor
from mlcycle.registry._mlflow import export_mlflow, import_mlflow
from mlcycle.registry._onnx import OnnxFlavor, convert_to_onnx
from mlcycle.registry._pyfunc import PyfuncFlavor
from mlcycle.registry._signature import ColumnSpec, Signature
from mlcycle.registry._sklearn import ALLOWED_TYPES, ESTIMATOR_FAMILIES, SklearnFlavor
from mlcycle.registry._xgboost import XGBoostFlavor

__all__ = [
    "ALLOWED_TYPES",
    "ENTRY_POINT_GROUP",
    "ESTIMATOR_FAMILIES",
    "ColumnSpec",
    "Flavor",
    "LightGBMFlavor",
    "LoadedModel",
    "OnnxFlavor",
    "PyfuncFlavor",
    "Signature",
    "SklearnFlavor",
    "XGBoostFlavor",
    "convert_to_onnx",
    "export_mlflow",
    "flavor_for",
    "get_flavor",
    "import_mlflow",
    "known_flavors",
]
