"""How runs look in a terminal: number formatting, and which metric value is best.

A metric whose name looks like a loss (rmse, mae, mse, loss, error, ...) is best
when lowest; any other metric (r2, accuracy, auc, ...) is best when highest.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

__all__ = [
    "LOSS_WORDS",
    "best_value",
    "format_number",
    "json_number",
    "lower_is_better",
    "metric_keys",
    "rule_of",
]

LOSS_WORDS = frozenset(
    {
        "brier",
        "cost",
        "deviance",
        "err",
        "error",
        "logloss",
        "loss",
        "mae",
        "mape",
        "medae",
        "mse",
        "msle",
        "nll",
        "perplexity",
        "rmse",
        "rmsle",
        "smape",
        "wape",
    }
)
"""Words that make a metric lower-is-better wherever they appear in its name."""

_WORD = re.compile(r"[a-z0-9]+")


def lower_is_better(key: str) -> bool:
    """Whether a lower value of metric ``key`` is better.

    >>> lower_is_better("val_rmse"), lower_is_better("train.loss"), lower_is_better("r2")
    (True, True, False)
    """
    name = key.lower()
    words = _WORD.findall(name)
    return any(word in LOSS_WORDS for word in words) or name.endswith(("loss", "error"))


def rule_of(key: str) -> str:
    """A short note saying which way ``key`` is better, for a column header."""
    return "lowest best" if lower_is_better(key) else "highest best"


def best_value(key: str, values: Iterable[float | None]) -> float | None:
    """The best finite value of metric ``key`` among ``values`` (``None`` if there is none)."""
    finite = [value for value in values if value is not None and math.isfinite(value)]
    if not finite:
        return None
    return min(finite) if lower_is_better(key) else max(finite)


def format_number(value: float | None, *, digits: int = 6) -> str:
    """A metric value for a table: ``digits`` significant digits, NaN and infinities spelled out.

    >>> format_number(41.23456789), format_number(float("nan")), format_number(float("-inf"))
    ('41.2346', 'NaN', '-inf')
    """
    if value is None:
        return ""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def json_number(value: float) -> float | str:
    """A metric value for JSON, which has no NaN or infinity: those become strings."""
    if math.isfinite(value):
        return value
    return format_number(value)


def metric_keys(metrics: Iterable[Mapping[str, float]]) -> list[str]:
    """Every metric key of several runs, sorted."""
    return sorted({key for run_metrics in metrics for key in run_metrics})
