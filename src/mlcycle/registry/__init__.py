"""The model registry: safe model formats, signatures, aliases with history, gates and cards."""

from __future__ import annotations

from mlcycle.registry._card import ModelCard
from mlcycle.registry._evaluate import GateInputs, evaluate_gates, fit_baseline
from mlcycle.registry._flavor import Flavor, LoadedModel
from mlcycle.registry._flavors import ENTRY_POINT_GROUP, flavor_for, get_flavor, known_flavors
from mlcycle.registry._gates import Evaluation, GateResult, SliceMetrics
from mlcycle.registry._signature import ColumnSpec, Signature
from mlcycle.registry._sklearn import ALLOWED_TYPES, SklearnFlavor

__all__ = [
    "ALLOWED_TYPES",
    "ENTRY_POINT_GROUP",
    "ColumnSpec",
    "Evaluation",
    "Flavor",
    "GateInputs",
    "GateResult",
    "LoadedModel",
    "ModelCard",
    "Signature",
    "SklearnFlavor",
    "SliceMetrics",
    "evaluate_gates",
    "fit_baseline",
    "flavor_for",
    "get_flavor",
    "known_flavors",
]
