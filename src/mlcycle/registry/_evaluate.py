"""Run a model's validation gates on a test set: the verdict the registry stores and promotes on.

``evaluate_gates`` is a pure function of its ``GateInputs``: the candidate
and (optionally) production models, the test rows, the recorded split and
training rows, the gate settings, the denied columns and the model's size.
It never reads the store; the registry gathers these and keeps the result.

The gates, each one ``GateResult``:

- ``threshold.<metric>.min|max``: the test metric within its configured bound;
- ``disjoint_test``: no test row was a training row (by the run's ``Split``);
- ``finite_predictions``: no NaN or infinite prediction;
- ``no_regression``: the primary metric's loss at most ``regression_tolerance``
  (relative) above production's on the same rows;
- ``beats_baseline``: the loss at least ``baseline_margin`` (relative) below a
  dummy or linear model's, fitted on the training rows;
- ``slice.<column>.<metric>`` and ``.gap``: per-slice bounds (fairness);
- ``latency_p99`` and ``model_size``: within budget;
- ``signature_compatible`` and ``no_denied_columns``: see ``_compatibility``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Collection
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any

from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from mlcycle.errors import ValidationFailed
from mlcycle.registry._compatibility import denied_column_gate, signature_gate
from mlcycle.registry._flavor import LoadedModel
from mlcycle.registry._gates import (
    Evaluation,
    GateResult,
    SliceMetrics,
    gate_failed,
    gate_passed,
    gate_skipped,
)
from mlcycle.registry._importance import permutation_importance, shap_importance
from mlcycle.registry._scoring import (
    Task,
    compute_metrics,
    infer_task,
    loss,
    primary_metric,
    probabilities,
)
from mlcycle.registry._slices import slice_gates, slice_metrics
from mlcycle.settings import GateSettings
from mlcycle.track import Split

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

__all__ = ["GateInputs", "evaluate_gates"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class GateInputs:
    """Everything the gates judge; the registry fills it from the store.

    ``target`` defaults to ``settings.target`` and ``task`` to ``settings.task``,
    else it is inferred. ``train`` holds the training rows the baseline is
    fitted on; ``size_bytes`` defaults to the candidate version's size.
    ``importance=False`` skips permutation importance and SHAP (a re-check at
    promotion needs only the verdict).
    """

    candidate: LoadedModel
    test: pd.DataFrame
    _: KW_ONLY
    target: str | None = None
    settings: GateSettings = field(default_factory=GateSettings)
    task: Task | None = None
    production: LoadedModel | None = None
    split: Split | None = None
    train: pd.DataFrame | None = None
    denied_columns: Collection[str] = frozenset()
    size_bytes: int | None = None
    latency_samples: int = 100
    importance: bool = True


@dataclass
class _Scored:
    """The candidate's predictions on the test rows, with what scoring them needs."""

    task: Task
    metric: str
    frame: pd.DataFrame
    truth: npt.NDArray[Any]  # Any: labels or numbers
    predicted: npt.NDArray[Any]  # Any: labels or numbers
    finite: npt.NDArray[np.bool_]
    scores: npt.NDArray[np.float64] | None
    classes: list[Any] | None  # Any: class labels
    positive: Any  # Any: a class label

    def metrics(self, predicted: npt.NDArray[Any] | None = None) -> dict[str, float]:  # Any: labels
        """Every metric of the task, on the rows with finite predictions."""
        values = self.predicted if predicted is None else predicted
        keep = self.finite & _finite_mask(values)
        return compute_metrics(
            self.task,
            self.truth[keep],
            values[keep],
            scores=None if self.scores is None or predicted is not None else self.scores[keep],
            classes=self.classes,
            positive=self.positive,
        )


def evaluate_gates(inputs: GateInputs) -> Evaluation:
    """Run every gate on ``inputs``; the ``Evaluation`` says what passed and what was measured."""
    started = time.perf_counter()
    settings = inputs.settings
    target = _target(inputs)
    scored = _score(inputs, target)
    metrics = scored.metrics()
    results = _threshold_gates(settings, metrics)
    results += [_disjoint_gate(inputs), _finite_gate(scored)]
    compared: dict[str, dict[str, float]] = {}
    results.append(_regression_gate(inputs, scored, metrics, compared))
    results.append(_baseline_gate(inputs, scored, target, metrics, compared))
    slices: list[SliceMetrics] = []
    for gate in settings.slices:
        results += _slice_gates(gate, inputs.test, scored, slices)
    with threadpool_limits(limits=1):  # one request, one thread: as a serving worker predicts
        latency = _latency_p99_ms(inputs.candidate, scored.frame, inputs.latency_samples)
    if latency is not None:
        metrics["latency_p99_ms"] = latency
    results += [_latency_gate(settings, latency), _size_gate(inputs)]
    production = inputs.production.signature if inputs.production else None
    if settings.signature_compatible:
        results.append(signature_gate(inputs.candidate.signature, production))
    if settings.deny_policy_columns:
        results.append(denied_column_gate(scored.frame.columns, inputs.denied_columns))
    importance: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    if inputs.importance:
        with threadpool_limits(limits=1):  # many small predictions: threads only contend
            importance, notes = _importance(inputs.candidate, scored)
    return Evaluation(
        task=scored.task,
        target=target,
        primary_metric=scored.metric,
        rows=len(scored.frame),
        results=tuple(results),
        metrics=metrics,
        slices=tuple(slices),
        importance=importance,
        compared=compared,
        notes=tuple(notes),
        duration_s=round(time.perf_counter() - started, 4),
    )


def _target(inputs: GateInputs) -> str:
    target = inputs.target or inputs.settings.target
    if target is None:
        raise ValidationFailed(
            "the gates need the label column: pass target=... or set target in the model's "
            "[registry.gates.<model>] section of mlcycle.toml"
        )
    if target not in inputs.test.columns:
        raise ValidationFailed(
            f"the test data has no target column {target!r} (columns: {list(inputs.test.columns)})"
        )
    return target


def _features(model: LoadedModel, test: pd.DataFrame, target: str) -> list[str]:
    names = model.signature.input_names
    missing = [name for name in names if name not in test.columns]
    if missing:
        raise ValidationFailed(
            f"the test data lacks the model's input column(s) {missing}; pass rows with every "
            "input of its signature"
        )
    return names or [str(column) for column in test.columns if column != target]


def _score(inputs: GateInputs, target: str) -> _Scored:
    import numpy as np  # noqa: PLC0415  (with the data)

    model = inputs.candidate
    frame = inputs.test[_features(model, inputs.test, target)]
    task: Task = inputs.task or inputs.settings.task or infer_task(model, inputs.test[target])
    metric = primary_metric(task, inputs.settings.primary_metric)
    predicted = np.asarray(model.predict(frame))
    truth = inputs.test[target].to_numpy()
    scores, classes = None, None
    if task == "classification":
        found = probabilities(model, frame)
        scores, classes = found if found is not None else (None, None)
        if classes is None:
            classes = sorted({*truth.tolist(), *predicted.tolist()}, key=str)
    positive = inputs.settings.positive_label
    return _Scored(
        task, metric, frame, truth, predicted, _finite_mask(predicted), scores, classes, positive
    )


def _finite_mask(values: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:  # Any: labels or numbers
    import numpy as np  # noqa: PLC0415  (with the data)
    import pandas as pd  # noqa: PLC0415  (with the data)

    if np.issubdtype(values.dtype, np.number):
        return np.asarray(np.isfinite(values.astype(float)), dtype=bool)
    return np.asarray(pd.notna(values), dtype=bool)


def _threshold_gates(settings: GateSettings, metrics: dict[str, float]) -> list[GateResult]:
    results = []
    for metric, bound in settings.thresholds.items():
        for side, limit in (("min", bound.min), ("max", bound.max)):
            if limit is None:
                continue
            name = f"threshold.{metric}.{side}"
            value = metrics.get(metric)
            if value is None:
                known = ", ".join(sorted(metrics))
                detail = f"{metric} was not measured (measured: {known})"
                results.append(gate_failed(name, detail, None, limit))
                continue
            passed = value >= limit if side == "min" else value <= limit
            sign = (">=" if side == "min" else "<=") if passed else ("<" if side == "min" else ">")
            detail = f"{metric} {value:.4g} {sign} {side} {limit:g}"
            results.append(GateResult(name, passed, detail, value, limit))
    return results


def _disjoint_gate(inputs: GateInputs) -> GateResult:
    name = "disjoint_test"
    if not inputs.settings.require_disjoint_test:
        return gate_skipped(name, "turned off (require_disjoint_test = false)")
    split = inputs.split
    if split is None:
        return gate_failed(
            name,
            "cannot show the test rows were never trained on: the training run recorded no "
            "split (call run.log_split in training)",
        )
    overlap = split.overlap(inputs.test)
    if overlap:
        detail = (
            f"{overlap} of the {len(inputs.test):,} test rows were training rows of "
            f"{split.dataset} (split by {split.kind})"
        )
        return gate_failed(name, detail, float(overlap), 0.0)
    detail = f"no test row was a training row of {split.dataset} (split by {split.kind})"
    return gate_passed(name, detail, 0.0, 0.0)


def _finite_gate(scored: _Scored) -> GateResult:
    bad = int((~scored.finite).sum())
    name = "finite_predictions"
    if bad:
        detail = f"{bad} of {len(scored.finite):,} predictions are NaN, infinite or missing"
        return gate_failed(name, detail, float(bad), 0.0)
    return gate_passed(name, "no NaN or infinite prediction", 0.0, 0.0)


def _regression_gate(
    inputs: GateInputs,
    scored: _Scored,
    metrics: dict[str, float],
    compared: dict[str, dict[str, float]],
) -> GateResult:
    name, tolerance, metric = "no_regression", inputs.settings.regression_tolerance, scored.metric
    if tolerance is None:
        return gate_skipped(name, "turned off (regression_tolerance = false)")
    if inputs.production is None:
        return gate_skipped(name, "no production version to compare with")
    import numpy as np  # noqa: PLC0415  (with the data)

    try:
        theirs = np.asarray(inputs.production.predict(inputs.test))
    except Exception as exc:  # noqa: BLE001  (any failure of production's predict is the finding)
        return gate_failed(name, f"production could not predict these rows: {exc!r}")
    compared["production"] = scored.metrics(theirs)
    limit = loss(metric, compared["production"][metric]) * (1 + tolerance)
    mine = loss(metric, metrics[metric])
    detail = (
        f"{metric} {metrics[metric]:.4g} vs production {compared['production'][metric]:.4g} "
        f"(loss {mine:.4g}, at most {limit:.4g} with tolerance {tolerance:.0%})"
    )
    return GateResult(name, mine <= limit, detail, mine, limit)


def _baseline_gate(
    inputs: GateInputs,
    scored: _Scored,
    target: str,
    metrics: dict[str, float],
    compared: dict[str, dict[str, float]],
) -> GateResult:
    name, kind, metric = "beats_baseline", inputs.settings.baseline, scored.metric
    if kind is None:
        return gate_skipped(name, "turned off (baseline = false)")
    if inputs.train is None:
        return gate_failed(name, f"no training rows to fit the {kind} baseline on (pass train=...)")
    columns = list(scored.frame.columns)
    baseline = fit_baseline(kind, scored.task, inputs.train[columns], inputs.train[target])
    compared["baseline"] = scored.metrics(baseline.predict(scored.frame))
    margin = inputs.settings.baseline_margin
    limit = loss(metric, compared["baseline"][metric]) * (1 - margin)
    mine = loss(metric, metrics[metric])
    detail = (
        f"{metric} {metrics[metric]:.4g} vs {kind} baseline {compared['baseline'][metric]:.4g} "
        f"(loss {mine:.4g}, at most {limit:.4g} with margin {margin:.0%})"
    )
    return GateResult(name, mine <= limit, detail, mine, limit)


def fit_baseline(kind: str, task: Task, features: pd.DataFrame, target: pd.Series[Any]) -> Any:
    """A dummy (mean or most frequent) or linear model fitted on the training rows.

    Returns the fitted scikit-learn estimator.
    """
    from sklearn.compose import ColumnTransformer  # noqa: PLC0415  (scikit-learn when evaluating)
    from sklearn.dummy import DummyClassifier, DummyRegressor  # noqa: PLC0415
    from sklearn.impute import SimpleImputer  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression, Ridge  # noqa: PLC0415
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: PLC0415

    if kind == "dummy":
        model: Any = (
            DummyRegressor(strategy="mean")
            if task == "regression"
            else DummyClassifier(strategy="most_frequent")
        )
    else:
        numeric = list(features.select_dtypes(include="number").columns)
        other = [column for column in features.columns if column not in numeric]
        encode = ColumnTransformer(
            [
                ("numeric", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
                (
                    "other",
                    make_pipeline(
                        SimpleImputer(strategy="most_frequent"),
                        OneHotEncoder(handle_unknown="ignore"),
                    ),
                    other,
                ),
            ]
        )
        last = Ridge() if task == "regression" else LogisticRegression(max_iter=1_000)
        model = make_pipeline(encode, last)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a baseline that converges slowly is still a baseline
        return model.fit(features, target)


def _slice_gates(
    gate: Any,  # Any: a SliceGate
    test: pd.DataFrame,
    scored: _Scored,
    slices: list[SliceMetrics],
) -> list[GateResult]:
    if gate.column not in test.columns:
        detail = f"the test data has no column {gate.column!r} to slice by"
        return [gate_failed(f"slice.{gate.column}", detail)]
    keep = scored.finite
    found = slice_metrics(
        gate,
        test[keep],
        task=scored.task,
        truth=scored.truth[keep],
        predicted=scored.predicted[keep],
        scores=None if scored.scores is None else scored.scores[keep],
        classes=scored.classes,
        positive=scored.positive,
    )
    slices += found
    return slice_gates(gate, found)


def _latency_p99_ms(model: LoadedModel, frame: pd.DataFrame, samples: int) -> float | None:
    import numpy as np  # noqa: PLC0415  (with the data)

    if samples <= 0 or frame.empty:
        return None
    rows = [frame.iloc[[position % len(frame)]] for position in range(samples + 1)]
    model.predict(rows[0])  # the first call may load lazily: not a serving latency
    timings = []
    for row in rows[1:]:
        began = time.perf_counter()
        model.predict(row)
        timings.append((time.perf_counter() - began) * 1000)
    return float(np.percentile(timings, 99))


def _latency_gate(settings: GateSettings, latency: float | None) -> GateResult:
    name, budget = "latency_p99", settings.max_latency_p99_ms
    if budget is None:
        return gate_skipped(name, "no budget (max_latency_p99_ms)", latency)
    if latency is None:
        return gate_failed(name, "latency was not measured (latency_samples = 0)", None, budget)
    sign = "<=" if latency <= budget else ">"
    detail = f"p99 single-row latency {latency:.3g} ms {sign} {budget:g} ms"
    return GateResult(name, latency <= budget, detail, latency, budget)


def _size_gate(inputs: GateInputs) -> GateResult:
    name, budget = "model_size", inputs.settings.max_size_mb
    size = inputs.size_bytes
    if size is None and inputs.candidate.version is not None:
        size = inputs.candidate.version.size
    measured = None if size is None else size / MIB
    if budget is None:
        return gate_skipped(name, "no budget (max_size_mb)", measured)
    if measured is None:
        return gate_failed(name, "the model's size is unknown (pass size_bytes)", None, budget)
    sign = "<=" if measured <= budget else ">"
    return GateResult(
        name, measured <= budget, f"size {measured:.3g} MiB {sign} {budget:g} MiB", measured, budget
    )


def _importance(
    model: LoadedModel, scored: _Scored
) -> tuple[dict[str, dict[str, float]], list[str]]:
    import pandas as pd  # noqa: PLC0415  (with the data)

    importance: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    rows = scored.frame[scored.finite]
    try:
        means, spread = permutation_importance(
            model,
            rows,
            pd.Series(scored.truth[scored.finite], index=rows.index),
            task=scored.task,
            metric=scored.metric,
            positive=scored.positive,
        )
    except Exception as exc:  # noqa: BLE001  (importance informs; it never decides a gate)
        notes.append(f"permutation importance failed: {type(exc).__name__}: {exc}")
    else:
        importance["permutation"], importance["permutation_std"] = means, spread
    shap, why = shap_importance(model, rows)
    if shap:
        importance["shap"] = shap
    if why:
        notes.append(why)
    return importance, notes
