"""The metrics the gates judge: which ones a task has, how to compute them, which way is better.

Regression reports ``rmse``, ``mae`` and ``r2``; classification reports
``accuracy``, ``precision``, ``recall`` and ``f1`` (binary: of the positive
label; several classes: macro averages) and ``roc_auc`` when the model gives
probabilities. Comparisons between models use the *loss* of a metric: the
metric itself when lower is better, ``1 - metric`` when higher is better, so a
tolerance or margin always means a relative change of the loss.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Literal

from mlcycle.errors import ValidationFailed

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from mlcycle.registry._flavor import LoadedModel

__all__ = [
    "CLASSIFICATION_METRICS",
    "LOWER_IS_BETTER",
    "REGRESSION_METRICS",
    "Task",
    "compute_metrics",
    "infer_task",
    "loss",
    "probabilities",
]

Task = Literal["regression", "classification"]
REGRESSION_METRICS = ("rmse", "mae", "r2")
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
LOWER_IS_BETTER = frozenset({"rmse", "mae"})
_MAX_CLASSES_AS_LABELS = 20


def infer_task(model: LoadedModel, target: pd.Series[Any]) -> Task:
    """Classification for a model with ``classes_``, a non-numeric or a two-valued target."""
    import pandas as pd  # noqa: PLC0415  (pandas comes with the data)

    if hasattr(model.model, "classes_"):
        return "classification"
    if pd.api.types.is_bool_dtype(target) or not pd.api.types.is_numeric_dtype(target):
        return "classification"
    if pd.api.types.is_integer_dtype(target) and target.nunique() <= 2:
        return "classification"
    return "regression"


def primary_metric(task: Task, configured: str | None) -> str:
    """The metric comparisons use: the configured one, else ``rmse`` or ``accuracy``."""
    metric = configured or ("rmse" if task == "regression" else "accuracy")
    known = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
    if metric not in known:
        raise ValidationFailed(
            f"primary_metric {metric!r} is not a {task} metric; use one of {', '.join(known)}"
        )
    return metric


def loss(metric: str, value: float) -> float:
    """The metric as a loss: lower is better."""
    return value if metric in LOWER_IS_BETTER else 1.0 - value


def compute_metrics(
    task: Task,
    truth: npt.ArrayLike,
    predicted: npt.ArrayLike,
    *,
    scores: npt.NDArray[np.float64] | None = None,
    classes: list[Any] | None = None,  # Any: class labels
    positive: Any = None,  # Any: a class label
) -> dict[str, float]:
    """Every metric of ``task`` for these predictions (``scores``: class probabilities)."""
    import numpy as np  # noqa: PLC0415  (with the data)
    from sklearn import metrics  # noqa: PLC0415  (scikit-learn when evaluating)

    y_true, y_pred = np.asarray(truth), np.asarray(predicted)
    if len(y_true) == 0:
        return {}
    if task == "regression":
        return {
            "rmse": float(np.sqrt(metrics.mean_squared_error(y_true, y_pred))),
            "mae": float(metrics.mean_absolute_error(y_true, y_pred)),
            "r2": float(metrics.r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan"),
        }
    labels = (
        classes if classes is not None else sorted({*y_true.tolist(), *y_pred.tolist()}, key=str)
    )
    binary = len(labels) <= 2
    pos = _positive(labels, positive) if binary else None
    average: Any = "binary" if binary else "macro"  # Any: sklearn's str | None
    found = {
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "precision": float(
            metrics.precision_score(y_true, y_pred, average=average, pos_label=pos, zero_division=0)
        ),
        "recall": float(
            metrics.recall_score(y_true, y_pred, average=average, pos_label=pos, zero_division=0)
        ),
        "f1": float(
            metrics.f1_score(y_true, y_pred, average=average, pos_label=pos, zero_division=0)
        ),
    }
    auc = _roc_auc(y_true, scores, labels, pos) if scores is not None else None
    if auc is not None:
        found["roc_auc"] = auc
    return found


def _positive(labels: list[Any], configured: Any) -> Any:  # Any: class labels
    """The configured positive label (matched as text too), else the last class."""
    if configured is not None:
        for label in labels:
            if label == configured or str(label) == str(configured):
                return label
        raise ValidationFailed(
            f"positive_label {configured!r} is not one of the classes {labels}; fix the gates"
        )
    return labels[-1] if labels else None


def _roc_auc(
    y_true: npt.NDArray[Any],  # Any: class labels
    scores: npt.NDArray[np.float64],
    labels: list[Any],  # Any: class labels
    positive: Any,  # Any: a class label
) -> float | None:
    import numpy as np  # noqa: PLC0415  (with the data)
    from sklearn.metrics import roc_auc_score  # noqa: PLC0415  (scikit-learn when evaluating)

    present = set(y_true.tolist())
    if len(present) < 2 or not present <= set(labels):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class absent from a slice: sklearn warns, we skip
        if len(labels) == 2:
            column = labels.index(positive)
            return float(roc_auc_score(y_true == positive, scores[:, column]))
        if len(present) < len(labels):
            return None
        normalised = scores / np.clip(scores.sum(axis=1, keepdims=True), 1e-12, None)
        return float(roc_auc_score(y_true, normalised, multi_class="ovr", labels=labels))


def probabilities(model: LoadedModel, frame: pd.DataFrame) -> tuple[Any, list[Any]] | None:
    """Class probabilities and the class order, when the native model offers ``predict_proba``."""
    import numpy as np  # noqa: PLC0415  (with the data)

    native = model.model
    proba = getattr(native, "predict_proba", None)
    classes = getattr(native, "classes_", None)
    if proba is None or classes is None:
        return None
    names = model.signature.input_names
    columns = frame[names] if names else frame
    return np.asarray(proba(columns), dtype=float), list(classes)
