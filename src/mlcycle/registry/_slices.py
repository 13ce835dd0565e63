"""Per-slice gates: the metrics on each value of a column, such as ``sex`` on the Adult data.

A model can be good on average and poor for one group. Each ``SliceGate``
computes the metrics on every value of its column (missing values form the
slice ``(missing)``), judges only slices with at least ``min_rows`` test
rows, and yields one result per bounded metric (every judged slice within
bounds) and per ``max_gap`` (best minus worst judged slice).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mlcycle.registry._gates import GateResult, SliceMetrics, gate_failed, gate_passed, gate_skipped
from mlcycle.registry._scoring import Task, compute_metrics

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from mlcycle.settings import SliceGate

__all__ = ["slice_gates", "slice_metrics"]

MISSING = "(missing)"


def slice_metrics(
    gate: SliceGate,
    test: pd.DataFrame,
    *,
    task: Task,
    truth: npt.NDArray[Any],  # Any: labels or numbers
    predicted: npt.NDArray[Any],  # Any: labels or numbers
    scores: npt.NDArray[np.float64] | None,
    classes: list[Any] | None,  # Any: class labels
    positive: Any,  # Any: a class label
) -> list[SliceMetrics]:
    """The metrics on each value of ``gate.column``, largest slice first."""
    values = test[gate.column].astype(object).where(test[gate.column].notna(), MISSING)
    labels = values.astype(str).to_numpy()
    found = []
    for value in sorted(set(labels.tolist())):
        rows = labels == value
        count = int(rows.sum())
        metrics = compute_metrics(
            task,
            truth[rows],
            predicted[rows],
            scores=None if scores is None else scores[rows],
            classes=classes,
            positive=positive,
        )
        found.append(SliceMetrics(gate.column, value, count, metrics, count >= gate.min_rows))
    found.sort(key=lambda item: (-item.rows, item.value))
    return found


def slice_gates(gate: SliceGate, slices: list[SliceMetrics]) -> list[GateResult]:
    """One result per bounded metric and per ``max_gap`` of ``gate``."""
    judged = [item for item in slices if item.judged]
    small = [f"{item.value} ({item.rows} rows)" for item in slices if not item.judged]
    note = f"; not judged, under {gate.min_rows} rows: {', '.join(small)}" if small else ""
    results = [
        _bound_result(gate.column, metric, low=bound.min, high=bound.max, judged=judged, note=note)
        for metric, bound in gate.metrics.items()
    ]
    results += [
        _gap_result(gate.column, metric, limit, judged, note)
        for metric, limit in gate.max_gap.items()
    ]
    return results


def _bound_result(
    column: str,
    metric: str,
    *,
    low: float | None,
    high: float | None,
    judged: list[SliceMetrics],
    note: str,
) -> GateResult:
    name = f"slice.{column}.{metric}"
    if not judged:
        return gate_skipped(name, f"no slice of {column} is large enough{note}")
    problems, worst, limit = [], None, low if low is not None else high
    for item in judged:
        value = item.metrics.get(metric, math.nan)
        if math.isnan(value):
            problems.append(f"{column}={item.value}: {metric} cannot be computed")
            continue
        if low is not None and value < low:
            problems.append(f"{column}={item.value}: {metric} {value:.4g} < min {low:g}")
        if high is not None and value > high:
            problems.append(f"{column}={item.value}: {metric} {value:.4g} > max {high:g}")
        if worst is None or (value < worst if low is not None else value > worst):
            worst = value
    if problems:
        return gate_failed(name, "; ".join(problems) + note, worst, limit)
    shown = ", ".join(f"{item.value} {item.metrics[metric]:.4g}" for item in judged)
    return gate_passed(name, f"{metric} by {column}: {shown}{note}", worst, limit)


def _gap_result(
    column: str, metric: str, limit: float, judged: list[SliceMetrics], note: str
) -> GateResult:
    name = f"slice.{column}.{metric}.gap"
    values = {
        item.value: item.metrics[metric]
        for item in judged
        if not math.isnan(item.metrics.get(metric, math.nan))
    }
    if len(values) < 2:
        detail = f"fewer than two slices of {column} with {metric}{note}"
        return gate_skipped(name, detail)
    best, worst = max(values, key=values.__getitem__), min(values, key=values.__getitem__)
    gap = values[best] - values[worst]
    detail = (
        f"{metric} gap by {column} {gap:.4g} ({best} {values[best]:.4g}, "
        f"{worst} {values[worst]:.4g}) {'<=' if gap <= limit else '>'} max {limit:g}{note}"
    )
    return GateResult(name, gap <= limit, detail, gap, limit)
