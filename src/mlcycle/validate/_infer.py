"""Schema inference from training statistics, in the spirit of TFDV.

The profile of a dataset already holds what a schema needs: each column's
type, how often it was missing, its numeric range and its categories. Inference
turns those observations into rules loose enough for the next batch of
similar data (``slack`` widens ranges and missing fractions) and tight enough
to catch a broken feed.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from mlcycle.data import ColumnProfile, DatasetProfile, DatasetRegistry, profile_table
from mlcycle.errors import ValidationFailed
from mlcycle.validate._refs import profile_of
from mlcycle.validate._schema import ColumnSchema, Schema, type_family
from mlcycle.validate._tables import TableLike, to_arrow

__all__ = ["infer_schema"]


def infer_schema(
    data: DatasetProfile | TableLike | str,
    *,
    slack: float = 0.1,
    max_categories: int = 100,
    key: Sequence[str] | None = None,
    dataset: str | None = None,
    registry: DatasetRegistry | None = None,
) -> Schema:
    """A schema that the profiled data passes, loosened by ``slack``.

    Per column: its Arrow type; ``required`` when no value was missing, else a
    missing fraction of at most ``observed * (1 + slack)``; numeric bounds widened
    by ``slack`` times the observed range (never below 0 for a column that never
    went negative; whole numbers for integer columns); the sorted categories of a
    string column with at most ``max_categories`` distinct values; NaN and
    infinities allowed only if seen. ``key`` names columns whose values together
    must be unique. ``data`` may be a profile, a table or frame, or a dataset
    reference such as ``"bike/3"`` (its stored profile is used; ``registry``
    defaults to the working directory's workspace).

    >>> import pyarrow as pa
    >>> s = infer_schema(pa.table({"x": [0.0, 10.0], "c": ["a", "b"]}), key=["c"])
    >>> s.column("x").min, s.column("x").max, s.column("c").domain, s.key
    (0.0, 11.0, ['a', 'b'], ['c'])
    """
    if slack < 0 or not math.isfinite(slack):
        raise ValidationFailed(f"slack must be a finite number >= 0, not {slack}")
    if isinstance(data, str):
        profile, version = profile_of(data, registry=registry)
        dataset = dataset if dataset is not None else version.name
    elif isinstance(data, DatasetProfile):
        profile = data
    else:
        profile = profile_table(to_arrow(data))
    if profile.rows == 0:
        raise ValidationFailed("the data has no rows; infer a schema from a non-empty dataset")
    key_columns = list(key or [])
    missing = [k for k in key_columns if k not in profile.names]
    if missing:
        raise ValidationFailed(
            f"key column(s) {', '.join(map(repr, missing))} are not in the data "
            f"(columns: {', '.join(profile.names)})"
        )
    columns = [
        _infer_column(column, profile.rows, slack=slack, max_categories=max_categories)
        for column in profile.columns
    ]
    return Schema(columns=columns, key=key_columns, min_rows=1, dataset=dataset)


def _infer_column(
    column: ColumnProfile, rows: int, *, slack: float, max_categories: int
) -> ColumnSchema:
    family = type_family(column.type)
    required = column.missing == 0
    fraction = 0.0 if required else min(1.0, _round_up(column.missing / rows * (1 + slack)))
    low, high = _bounds(column, slack=slack, integer=family == "integer")
    domain = None
    if (
        column.kind == "categorical"
        and column.category_counts is not None
        and len(column.category_counts) <= max_categories
    ):
        domain = sorted(column.category_counts)
    return ColumnSchema(
        name=column.name,
        type=column.type,
        required=required,
        max_missing_fraction=fraction,
        min=low,
        max=high,
        domain=domain,
        allow_nan=column.nan_count > 0,
        allow_inf=column.inf_count > 0,
    )


def _bounds(
    column: ColumnProfile, *, slack: float, integer: bool
) -> tuple[float | None, float | None]:
    if column.kind != "numeric" or not isinstance(column.min, float):
        return None, None
    if not isinstance(column.max, float):
        return None, None
    span = column.max - column.min or abs(column.max) or 1.0
    margin = slack * span if slack > 0 else 0.0  # a span that overflows to inf times 0 is nan
    low = _finite(column.min - margin, column.min)
    high = _finite(column.max + margin, column.max)
    if column.min >= 0 > low:
        low = 0.0
    if integer:
        low, high = float(math.floor(low)), float(math.ceil(high))
    return low, high


def _finite(bound: float, observed: float) -> float:
    """``bound``, or the largest float on its side when widening a finite ``observed`` overflowed.

    >>> _finite(float("inf"), 1e308)
    1.7976931348623157e+308
    """
    if math.isinf(bound) and math.isfinite(observed):
        return math.copysign(sys.float_info.max, bound)
    return bound


def _round_up(fraction: float, digits: int = 4) -> float:
    """Round up to a readable number of digits, so the rule stays at least as loose."""
    scale = 10**digits
    return float(math.ceil(fraction * scale - 1e-9) / scale)  # 0.30000000000000004 is 0.3
