"""``mc.registry.register(...)`` and friends: the registry of the working directory's workspace.

The workspace sits above ``registry`` in the layers, so these functions reach
it by name when called (``importlib``), never by an import at module level.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from mlcycle.registry._registry import ModelRegistry

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from mlcycle.registry._card import ModelCard
    from mlcycle.registry._flavor import Flavor, LoadedModel
    from mlcycle.registry._gates import Evaluation
    from mlcycle.store import AliasMove, ModelVersion, RegisteredModel, Run
    from mlcycle.track import ActiveRun

__all__ = [
    "card",
    "current_registry",
    "evaluate",
    "export_mlflow",
    "gate_results",
    "get",
    "history",
    "import_mlflow",
    "input_example",
    "load",
    "models",
    "promote",
    "register",
    "rollback",
    "rollback_target",
    "update",
    "versions",
]


def current_registry() -> ModelRegistry:
    """The model registry of the workspace ``mc`` acts on."""
    root = importlib.import_module("mlcycle")
    registry: ModelRegistry = root.current_workspace().registry
    return registry


def register(
    name: str,
    model: object,
    *,
    run: ActiveRun | Run | str | None = None,
    input_example: object = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,  # Any: stored as text
    description: str | None = None,
    flavor: str | Flavor | None = None,
) -> ModelVersion:
    """Store ``model`` as the next version of ``name`` (see ``ModelRegistry.register``)."""
    return current_registry().register(
        name,
        model,
        run=run,
        input_example=input_example,
        metrics=metrics,
        tags=tags,
        params=params,
        description=description,
        flavor=flavor,
    )


def load(
    ref: str | ModelVersion, *, trust: bool = False, runtime: Literal["native", "onnx"] = "native"
) -> LoadedModel:
    """Load ``models:/bike@production`` (or ``bike/3``), its digest checked first."""
    return current_registry().load(ref, trust=trust, runtime=runtime)


def get(ref: str | ModelVersion) -> ModelVersion:
    """The version record ``ref`` names."""
    return current_registry().get(ref)


def input_example(ref: str | ModelVersion) -> pd.DataFrame:
    """The input example stored with a version."""
    return current_registry().input_example(ref)


def versions(name: str) -> list[ModelVersion]:
    """Every version of model ``name``, oldest first."""
    return current_registry().versions(name)


def models() -> list[RegisteredModel]:
    """Every registered model, by name, with its aliases."""
    return current_registry().models()


def history(name: str, alias: str | None = None) -> list[AliasMove]:
    """Every alias move of model ``name`` (or of one alias), oldest first."""
    return current_registry().history(name, alias)


def update(
    ref: str | ModelVersion,
    *,
    tags: Mapping[str, str] | None = None,
    description: str | None = None,
    limitations: str | None = None,
) -> ModelVersion:
    """Merge tags into a version and set its description or limitations."""
    return current_registry().update(
        ref, tags=tags, description=description, limitations=limitations
    )


def promote(
    name: str,
    version: int,
    to: str = "production",
    *,
    reason: str | None = None,
    force: bool = False,
    trust: bool = False,
) -> AliasMove:
    """Point alias ``to`` at ``version``; guarded aliases need passed gates or a forced reason."""
    return current_registry().promote(name, version, to, reason=reason, force=force, trust=trust)


def rollback(name: str, alias: str = "production", *, reason: str | None = None) -> AliasMove:
    """Return ``alias`` to the version it held before."""
    return current_registry().rollback(name, alias, reason=reason)


def rollback_target(name: str, alias: str = "production") -> ModelVersion | None:
    """The version ``rollback`` would return ``alias`` to."""
    return current_registry().rollback_target(name, alias)


def gate_results(ref: str | ModelVersion) -> dict[str, Any] | None:  # Any: JSON values
    """The gate evaluation stored on a version."""
    return current_registry().gate_results(ref)


def evaluate(
    ref: str | ModelVersion,
    test_data: pd.DataFrame | None = None,
    *,
    train_data: pd.DataFrame | None = None,
    target: str | None = None,
    trust: bool = False,
) -> Evaluation:
    """Run a version's gates on held-out rows and store the verdict (``ModelRegistry.evaluate``)."""
    return current_registry().evaluate(
        ref, test_data, train_data=train_data, target=target, trust=trust
    )


def card(ref: str | ModelVersion) -> ModelCard:
    """The model card of a version (``ModelRegistry.card``); ``.write(folder)`` saves it."""
    return current_registry().card(ref)


def export_mlflow(ref: str | ModelVersion, directory: str | Path) -> Path:
    """Write a scikit-learn version as an MLflow model directory (skops, never pickle)."""
    return current_registry().export_mlflow(ref, directory)


def import_mlflow(
    name: str,
    directory: str | Path,
    *,
    trust: bool = False,
    tags: Mapping[str, str] | None = None,
    description: str | None = None,
) -> ModelVersion:
    """Register an MLflow scikit-learn model as a skops version; pickled ones need ``trust``."""
    return current_registry().import_mlflow(
        name, directory, trust=trust, tags=tags, description=description
    )
