"""One window of the prediction log scored: the flat metrics alert rules read, and its drift.

Every function here takes Arrow columns of one window and returns numbers;
nothing reads the store, so a 100,000-row window costs a few vectorised
passes. Decisions the documentation repeats:

- Drift, skew, numerical stability and latency read the rows that were
  answered (not shadow copies); each shadow variant gets ``shadow.<variant>.*``.
- Training/serving skew: a feature is skewed when more than 1 % of its
  window values fall outside the training data's range (numbers) or are
  categories training never saw, or when its missing share is more than 5
  points above training's. ``schema_violations`` counts the values that break
  the model's signature: a missing input column (every row), text where a
  number is expected (every row), or a missing value in an input the
  signature does not mark nullable.
- Latency is per request (its first row), in the percentiles ``p50``/``p99``.
- Performance reads the labels known when the window is scored; ``roc_auc``
  is computed from the predicted labels (the log holds no class scores).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.monitor._drift import drift
from mlcycle.monitor._frames import column_type
from mlcycle.monitor._report import DriftReport

if TYPE_CHECKING:
    from mlcycle.monitor._reference import ColumnReference, ReferenceStats
    from mlcycle.settings import MonitorSettings

__all__ = ["ModelFacts", "WindowResult", "performance", "score_window", "slice_label"]

SKEW_OUTSIDE = 0.01
SKEW_MISSING = 0.05
MAX_SLICE_VALUES = 50
_DAY_S = 86_400.0
_KEY = ["request_id", "row_index"]


@dataclass(frozen=True)
class WindowResult:
    """One scored window of a deployment: its metrics (as alert rules see them) and drift."""

    deployment: str
    window_start: datetime
    window_end: datetime
    values: dict[str, float | None]
    rows: int
    drift: DriftReport | None = None


@dataclass(frozen=True)
class ModelFacts:
    """What scoring needs to know of the model version that answered a window."""

    ref: str
    registered_at: datetime | None
    data_created_at: datetime | None
    inputs: Mapping[str, tuple[str, bool]]  # name -> (signature type, nullable)
    task: str | None
    reference: ReferenceStats | None
    outputs: ReferenceStats | None


def score_window(
    answered: pa.Table,
    *,
    end: datetime,
    model: ModelFacts,
    config: MonitorSettings,
    labels: pa.Table,
    features: Sequence[str],
) -> tuple[dict[str, float | None], DriftReport | None]:
    """The metrics of the answered rows of one window (at least one row)."""
    inputs = answered.column("inputs")
    values: dict[str, float | None] = {"rows": float(answered.num_rows)}
    frame = pa.table({name: pc.struct_field(inputs, name) for name in features})
    report = None
    if model.reference is not None and features:
        tested = [name for name in features if _comparable(model.reference, frame, name)]
        report = _drift(model.reference, frame.select(tested), config)
        values["drift_share"] = report.drifted_share
        for name, column in report.columns.items():
            values[f"drift.{name}"] = (
                column.p_value if column.p_value is not None else (column.statistic)
            )
            values[f"drifted.{name}"] = 1.0 if column.drifted else 0.0
        values["skew_share"] = _skew_share(model.reference, frame.select(tested))
    values["prediction_drift"] = _prediction_drift(model.outputs, answered.column("output"), config)
    values["schema_violations"] = float(_violations(inputs, model.inputs))
    values["nan_inputs"] = float(_bad_rows(frame))
    values["nan_outputs"] = float(_bad_values(answered.column("output")))
    values.update(latency(answered))
    values.update(_ages(end, model))
    values.update(performance(answered, labels, task=model.task, config=config))
    return values, report


def _comparable(reference: ReferenceStats, frame: pa.Table, name: str) -> bool:
    """Whether ``name`` can be tested: in the reference, and logged as the same kind (or null).

    A feature logged as text where training had numbers is left to skew and
    schema violations, which count it, rather than failing the window.
    """
    if name not in reference.columns:
        return False
    logged = frame.schema.field(name).type
    return pa.types.is_null(logged) or column_type(logged) == reference.columns[name].kind


def _drift(reference: ReferenceStats, frame: pa.Table, config: MonitorSettings) -> DriftReport:
    names = frame.column_names
    return drift(
        reference,
        frame,
        columns=names,
        numeric_test=config.numeric_test,
        categorical_test=config.categorical_test,
        tests={k: v for k, v in config.tests.items() if k in names},
        thresholds={k: v for k, v in config.thresholds.items() if k in names},
        drift_share=config.drift_share,
    )


def _prediction_drift(
    reference: ReferenceStats | None, output: pa.ChunkedArray, config: MonitorSettings
) -> float | None:
    if reference is None or "output" not in reference.columns:
        return None
    kind = column_type(output.type)
    if kind is None or kind != reference.column("output").kind:
        return None
    report = drift(
        reference,
        pa.table({"output": output}),
        numeric_test=config.numeric_test,
        categorical_test=config.categorical_test,
    )
    column = report.columns["output"]
    return column.p_value if column.p_value is not None else column.statistic


def _skew_share(reference: ReferenceStats, frame: pa.Table) -> float | None:
    if not frame.column_names:
        return None
    skewed = [_skewed(reference.column(n), frame.column(n)) for n in frame.column_names]
    return sum(skewed) / len(skewed)


def _skewed(reference: ColumnReference, column: pa.ChunkedArray) -> bool:
    total = len(column)
    missing = _missing(column)
    ref_total = reference.count + reference.missing
    ref_missing = reference.missing / ref_total if ref_total else 0.0
    if total and missing / total - ref_missing > SKEW_MISSING:
        return True
    present = total - missing
    if present == 0:
        return False
    if reference.kind == "numeric" and reference.values is not None and reference.values.size:
        if column_type(column.type) != "numeric":
            return True
        numbers = _floats(column)
        numbers = numbers[np.isfinite(numbers)]
        low, high = float(reference.values[0]), float(reference.values[-1])
        outside = int(np.count_nonzero((numbers < low) | (numbers > high)))
        return outside / present > SKEW_OUTSIDE
    if reference.labels is not None:
        seen = pa.array([str(label) for label in reference.labels.tolist()], pa.string())
        text = pc.cast(column.drop_null(), pa.string())
        unseen = len(text) - int(pc.sum(pc.is_in(text, value_set=seen)).as_py() or 0)
        return unseen / present > SKEW_OUTSIDE
    return False


def _violations(inputs: pa.ChunkedArray, expected: Mapping[str, tuple[str, bool]]) -> int:
    struct = inputs.type
    rows = len(inputs)
    count = 0
    for name, (kind, nullable) in expected.items():
        if struct.get_field_index(name) < 0:
            count += rows
            continue
        column = pc.struct_field(inputs, name)
        numeric_expected = kind in {"int64", "float64", "bool"}
        if numeric_expected and column_type(column.type) == "categorical":
            count += rows
        elif not nullable:
            count += _missing(column)
    return count


def _missing(column: pa.ChunkedArray | pa.Array) -> int:
    missing = column.null_count
    if pa.types.is_floating(column.type):
        numbers = _floats(column)
        missing += int(np.count_nonzero(~np.isfinite(numbers))) - column.null_count
    return int(missing)


def _floats(column: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.float64]:
    """Numbers as float64 with nulls as NaN."""
    cast = pc.cast(column, pa.float64())
    filled = pc.fill_null(cast, float("nan"))
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=np.float64)


def _bad_values(column: pa.ChunkedArray) -> int:
    if column_type(column.type) == "numeric":
        return int(np.count_nonzero(~np.isfinite(_floats(column))))
    if pa.types.is_list(column.type):
        flat = pc.list_flatten(column)
        finite = pc.fill_null(pc.is_finite(flat), fill_value=False)  # a logged NaN is a null
        bad_rows = pc.list_parent_indices(column).filter(pc.invert(finite))
        return int(column.null_count) + len(pc.unique(bad_rows))
    return int(column.null_count)


def _bad_rows(frame: pa.Table) -> int:
    numeric = [n for n in frame.column_names if column_type(frame.column(n).type) == "numeric"]
    if not numeric:
        return 0
    bad = np.zeros(frame.num_rows, dtype=bool)
    for name in numeric:
        bad |= ~np.isfinite(_floats(frame.column(name)))
    return int(np.count_nonzero(bad))


def latency(rows: pa.Table, prefix: str = "") -> dict[str, float | None]:
    """``latency_p50_ms`` and ``latency_p99_ms`` per request (its first row)."""
    first = pc.equal(rows.column("row_index"), 0)
    numbers = _floats(rows.column("latency_ms").filter(first))
    numbers = numbers[np.isfinite(numbers)]
    if numbers.size == 0:
        return {f"{prefix}latency_p50_ms": None, f"{prefix}latency_p99_ms": None}
    p50, p99 = np.percentile(numbers, [50, 99])
    return {f"{prefix}latency_p50_ms": float(p50), f"{prefix}latency_p99_ms": float(p99)}


def _ages(end: datetime, model: ModelFacts) -> dict[str, float | None]:
    def days(since: datetime | None) -> float | None:
        return None if since is None else (end - since).total_seconds() / _DAY_S

    return {
        "model_age_days": days(model.registered_at),
        "data_age_days": days(model.data_created_at),
    }


def with_labels(rows: pa.Table, labels: pa.Table) -> pa.Table:
    """``rows`` with ``label`` and ``label_delay_s`` (nulls where no label is known)."""
    keys = rows.select(_KEY).append_column("_at", pa.array(np.arange(rows.num_rows)))
    found = keys.join(labels.select([*_KEY, "label", "labelled_at"]), keys=_KEY, use_threads=False)
    found = found.sort_by("_at")
    delay = pc.divide(
        pc.cast(pc.subtract(found.column("labelled_at"), rows.column("time")), pa.int64()), 1e6
    )
    return rows.append_column("label", found.column("label")).append_column("label_delay_s", delay)


def performance(
    rows: pa.Table,
    labels: pa.Table,
    *,
    task: str | None,
    config: MonitorSettings,
    prefix: str = "",
) -> dict[str, float | None]:
    """``labelled_rows``, ``label_delay_hours`` and the task's metrics, overall and per slice."""
    joined = with_labels(rows, labels).filter(pc.is_valid(pc.field("label")))
    values: dict[str, float | None] = {f"{prefix}labelled_rows": float(joined.num_rows)}
    if joined.num_rows == 0:
        values[f"{prefix}label_delay_hours"] = None
        return values
    delays = _floats(joined.column("label_delay_s"))
    values[f"{prefix}label_delay_hours"] = float(np.median(delays)) / 3600.0
    found_task = task or _guess_task(joined.column("label"), joined.column("output"))
    if found_task is None:
        return values
    values.update(_metrics(found_task, joined, config, prefix=prefix))
    inputs = joined.column("inputs")
    for column in config.slices:
        if inputs.type.get_field_index(column) < 0:
            continue
        keys = pc.struct_field(inputs, column)
        for value in pc.unique(keys).to_pylist()[:MAX_SLICE_VALUES]:
            if value is None:
                continue
            part = joined.filter(pc.equal(keys, pa.scalar(value, keys.type)))
            label = slice_label(column, value)
            found = _metrics(found_task, part, config, prefix=prefix)
            values.update({f"{name}[{label}]": number for name, number in found.items()})
    return values


def slice_label(column: str, value: Any) -> str:  # Any: a logged input value
    """``season=1`` for a slice: whole numbers without their ``.0``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{column}={value}"


def _metrics(
    task: str, rows: pa.Table, config: MonitorSettings, *, prefix: str
) -> dict[str, float | None]:
    from mlcycle.registry import CLASSIFICATION_METRICS, compute_metrics  # noqa: PLC0415

    truth, predicted = rows.column("label"), rows.column("output")
    if task == "regression":
        if column_type(predicted.type) != "numeric" or column_type(truth.type) != "numeric":
            return {}
        y_true, y_pred = _floats(truth), _floats(predicted)
        finite = np.isfinite(y_true) & np.isfinite(y_pred)
        found: dict[str, float] = compute_metrics("regression", y_true[finite], y_pred[finite])
    else:
        y_true = _labels([_as_label(v) for v in truth.to_pylist()])
        y_pred = _labels([_as_label(v) for v in predicted.to_pylist()])
        found = compute_metrics("classification", y_true, y_pred, positive=config.positive_label)
        if len(set(y_true.tolist()) | set(y_pred.tolist())) == 2:
            found["roc_auc"] = _label_auc(y_true, y_pred, config.positive_label)
    names = CLASSIFICATION_METRICS if task == "classification" else tuple(found)
    return {f"{prefix}{name}": _finite(found.get(name)) for name in names}


def _label_auc(
    y_true: npt.NDArray[Any], y_pred: npt.NDArray[Any], configured: object
) -> float:  # Any: class labels
    """ROC AUC of the predicted labels (as 0/1 scores) for the positive class."""
    from sklearn.metrics import roc_auc_score  # noqa: PLC0415  (scikit-learn when scoring)

    labels = sorted(set(y_true.tolist()) | set(y_pred.tolist()), key=str)
    positive = labels[-1]
    if configured is not None:
        positive = next((x for x in labels if str(x) == str(configured)), positive)
    truth = y_true == positive
    if truth.all() or not truth.any():
        return float("nan")  # one class only: undefined
    return float(roc_auc_score(truth, (y_pred == positive).astype(float)))


def _labels(values: list[Any]) -> npt.NDArray[Any]:  # Any: class labels
    """Labels as one array: numbers or text as NumPy infers them, mixed kinds as text."""
    kinds = {type(value) for value in values}
    if len(kinds) > 1:
        return np.asarray([str(value) for value in values])
    return np.asarray(values)


def _as_label(value: Any) -> Any:  # Any: a label or an output
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _guess_task(label: pa.ChunkedArray, output: pa.ChunkedArray) -> str | None:
    """Classification for text, or whole numbers of two values in labels and outputs together."""
    if pa.types.is_list(output.type):
        return None
    if column_type(label.type) == "categorical" or column_type(output.type) == "categorical":
        return "classification"
    values = np.concatenate([_floats(label), _floats(output)])
    values = values[np.isfinite(values)]
    integral = bool(np.all(values == np.round(values)))
    return "classification" if integral and np.unique(values).size <= 2 else "regression"


def _finite(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)
