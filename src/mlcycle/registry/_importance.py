"""Which features a model relies on: permutation importance always, SHAP for tree models.

Permutation importance works for any flavor because it only predicts: each
feature is shuffled in turn (``REPEATS`` times, seeded) on at most
``MAX_ROWS`` test rows, and the drop of the primary metric's score is that
feature's importance. SHAP (the ``explain`` extra) explains tree models
exactly and cheaply; it runs when ``shap`` imports and the model (or the last
step of a pipeline) is a tree model, and is skipped with a note otherwise.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from mlcycle.registry._scoring import LOWER_IS_BETTER, Task, compute_metrics

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from mlcycle.registry._flavor import LoadedModel

__all__ = ["MAX_ROWS", "REPEATS", "SEED", "permutation_importance", "shap_importance"]

MAX_ROWS = 1_000
SHAP_ROWS = 500
REPEATS = 3
SEED = 0
_TREE_MODULES = ("sklearn.ensemble", "sklearn.tree", "xgboost", "lightgbm", "catboost")


class _Predictor:
    """The loaded model as scikit-learn's inspection code wants an estimator."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model

    def fit(self, frame: pd.DataFrame, target: Any) -> _Predictor:  # Any: unused
        return self

    def predict(self, frame: pd.DataFrame) -> npt.NDArray[Any]:  # Any: labels or numbers
        return self.model.predict(frame)


def permutation_importance(
    model: LoadedModel,
    frame: pd.DataFrame,
    truth: pd.Series[Any],  # Any: labels or numbers
    *,
    task: Task,
    metric: str,
    positive: Any = None,  # Any: a class label
) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and spread of the score drop when each feature is shuffled."""
    from sklearn.inspection import permutation_importance as permute  # noqa: PLC0415

    rows, labels = frame, truth
    if len(frame) > MAX_ROWS:
        import numpy as np  # noqa: PLC0415  (with the data)

        positions = np.random.default_rng(SEED).choice(len(frame), MAX_ROWS, replace=False)
        rows, labels = frame.iloc[positions], truth.iloc[positions]
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    classes = sorted(set(truth.tolist()), key=str) if task == "classification" else None

    def score(estimator: _Predictor, features: pd.DataFrame, target: Any) -> float:  # Any: labels
        found = compute_metrics(
            task, target, estimator.predict(features), classes=classes, positive=positive
        )
        return sign * found[metric]

    found = permute(
        _Predictor(model), rows, labels, scoring=score, n_repeats=REPEATS, random_state=SEED
    )
    names = [str(column) for column in rows.columns]
    means = {name: float(value) for name, value in zip(names, found.importances_mean, strict=True)}
    spread = {name: float(value) for name, value in zip(names, found.importances_std, strict=True)}
    return means, spread


def shap_importance(model: LoadedModel, frame: pd.DataFrame) -> tuple[dict[str, float], str | None]:
    """Mean absolute SHAP value per feature, or ``({}, why it was skipped)``."""
    native, rows, names = _tree_part(model.model, frame)
    if native is None:
        return {}, f"SHAP skipped: {type(model.model).__name__} is not a tree model"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # shap warns on import and on some models
            import shap  # noqa: PLC0415  (the optional ``explain`` extra)

            values = shap.TreeExplainer(native).shap_values(rows)
    except ImportError:
        return {}, "SHAP skipped: install the explain extra (pip install 'mlcycle[explain]')"
    except Exception as exc:  # noqa: BLE001  (SHAP is a bonus: any failure only skips it)
        return {}, f"SHAP skipped: {type(exc).__name__}: {exc}"
    return _mean_abs(values, names), None


def _tree_part(
    native: object, frame: pd.DataFrame
) -> tuple[object | None, Any, list[str]]:  # Any: a frame or array
    """The tree model to explain, the rows it sees and their feature names."""
    rows = frame.sample(n=SHAP_ROWS, random_state=SEED) if len(frame) > SHAP_ROWS else frame
    steps = getattr(native, "steps", None)
    if steps:
        last = steps[-1][1]
        if not _is_tree(last):
            return None, rows, []
        if len(steps) == 1:
            return last, rows, [str(column) for column in rows.columns]
        head = native[:-1]  # type: ignore[index]  # a scikit-learn Pipeline slices
        transformed = head.transform(rows)
        names = _names(head, transformed.shape[1])
        return last, _dense(transformed), names
    if _is_tree(native):
        return native, rows, [str(column) for column in rows.columns]
    return None, rows, []


def _is_tree(model: object) -> bool:
    module = type(model).__module__
    return module.startswith(_TREE_MODULES) and hasattr(model, "predict")


def _names(head: Any, width: int) -> list[str]:  # Any: a fitted pipeline head
    try:
        return [str(name) for name in head.get_feature_names_out()]
    except (AttributeError, ValueError, TypeError):
        return [f"x{position}" for position in range(width)]


def _dense(values: Any) -> Any:  # Any: an array or a sparse matrix
    return values.toarray() if hasattr(values, "toarray") else values


def _mean_abs(values: Any, names: list[str]) -> dict[str, float]:  # Any: shap's output
    import numpy as np  # noqa: PLC0415  (with the data)

    if isinstance(values, list):  # older shap: one array per class
        values = np.stack(values, axis=-1)
    array: npt.NDArray[np.float64] = np.abs(np.asarray(values, dtype=float))
    if array.ndim == 3:
        array = array.mean(axis=2)
    means = array.reshape(-1, array.shape[-1]).mean(axis=0)
    return {name: float(value) for name, value in zip(names, means, strict=True)}
