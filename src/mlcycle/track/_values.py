"""What a run may log, checked where it is logged so the mistake points at the caller's line."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from mlcycle.errors import ValidationFailed
from mlcycle.store import check_key

__all__ = ["check_key", "check_name", "metric_step", "metric_value", "text_values"]

MAX_NAME_LENGTH = 256


def metric_value(key: str, value: object) -> float:
    """``value`` as a float; NaN and infinities are kept, anything not a number is refused.

    >>> metric_value("rmse", 3), metric_value("rmse", float("inf"))
    (3.0, inf)
    >>> metric_value("rmse", "3.2")
    Traceback (most recent call last):
    ...
    TypeError: metric 'rmse' must be a number (int, float or numpy number), not str: '3.2'
    """
    kind = type(value)
    if kind is float or kind is int:
        return float(value)  # type: ignore[arg-type]  # checked just above
    if not isinstance(value, bool) and isinstance(value, numbers.Real):
        return float(value)
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise TypeError(
        f"metric {key!r} must be a number (int, float or numpy number), "
        f"not {kind.__name__}: {shown}"
    )


def metric_step(key: str, step: object) -> int:
    """``step`` as an int; bools and fractions are refused."""
    if not isinstance(step, bool) and isinstance(step, numbers.Integral):
        return int(step)
    raise TypeError(f"step of metric {key!r} must be an int, not {type(step).__name__}: {step!r}")


def text_values(values: Mapping[str, Any] | None, *, kind: str) -> dict[str, str]:
    """Params or tags as text, every key checked; ``None`` values are refused."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise TypeError(f"{kind}s must be a dict of name to value, not {type(values).__name__}")
    checked: dict[str, str] = {}
    for key, value in values.items():
        check_key(key, kind=kind)
        checked[key] = text_value(key, value, kind=kind)
    return checked


def text_value(key: str, value: object, *, kind: str) -> str:
    """A param or tag value as the text the store keeps."""
    if value is None:
        raise ValidationFailed(f"{kind} {key!r} is None; log a value, or leave the {kind} out")
    return value if isinstance(value, str) else str(value)


def check_name(name: str, *, what: str) -> str:
    """An experiment or run name: non-empty text of at most 256 characters."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationFailed(f"{what} name {name!r} must be non-empty text, e.g. 'bike-demand'")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationFailed(
            f"{what} name '{name[:40]}...' has {len(name)} characters; use at most 256"
        )
    return name
