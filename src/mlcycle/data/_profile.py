"""Column statistics of an Arrow table, computed without per-row Python.

A profile is stored with every dataset version and is the reference that
schema inference and monitoring compare against, so it keeps what exact tests
need: fixed histogram edges with counts, every category's count (up to a cap)
and a bounded sorted random sample of each numeric column.

Decisions, so the numbers mean one thing:

- ``count`` is the number of non-null values (NaN included: Arrow keeps NaN and
  null apart); ``missing`` is the number of nulls.
- ``min``, ``max``, ``mean``, ``std`` (sample, ``ddof=1``), quantiles (linear
  interpolation, as numpy and pandas), the histogram and the sample use the
  finite values only; ``nan_count`` and ``inf_count`` count the rest.
- ``distinct`` counts distinct non-null values, NaN excluded and each infinity
  counted once, as ``pandas.Series.nunique`` does.
- Strings and dictionary columns are ``categorical``: top values and (up to
  1,000 categories) every category's count. Booleans are ``boolean`` with the
  counts of ``"true"``/``"false"``. Integer columns stay ``numeric`` but also
  carry category counts when they have at most 50 distinct values (hours,
  seasons, codes), so monitoring can test them as categories too.
- Dates and timestamps are ``datetime`` with ISO ``min``/``max``; anything else
  is ``other`` with counts only.

Numeric columns are sorted once (numpy's SIMD sort); min, max, quantiles,
distinct values, histogram counts and the sample are all read off the sorted
array, and columns are profiled on a small thread pool since the kernels
release the GIL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.errors import ValidationFailed

__all__ = [
    "CATEGORY_CAP",
    "HISTOGRAM_BINS",
    "QUANTILES",
    "SAMPLE_SIZE",
    "ColumnKind",
    "ColumnProfile",
    "DatasetProfile",
    "Histogram",
    "profile_table",
]

ColumnKind = Literal["numeric", "categorical", "boolean", "datetime", "other"]

QUANTILES: Mapping[str, float] = {
    "p01": 0.01,
    "p05": 0.05,
    "p25": 0.25,
    "p50": 0.50,
    "p75": 0.75,
    "p95": 0.95,
    "p99": 0.99,
}
HISTOGRAM_BINS = 20
SAMPLE_SIZE = 10_000
SAMPLE_SEED = 20_240_601
CATEGORY_CAP = 1_000
TOP_VALUES = 20
INTEGER_CATEGORY_LIMIT = 50
_THREADS = 2
_SAFE_MAGNITUDE = 1e150
_EXACT_INTEGER = 2.0**52


@dataclass(frozen=True)
class Histogram:
    """Equal-width bins: ``counts[i]`` values lie in ``[edges[i], edges[i+1])``, the last closed."""

    edges: list[float]
    counts: list[int]


@dataclass(frozen=True)
class ColumnProfile:
    """Statistics of one column; see the module docstring for what each number counts."""

    name: str
    type: str
    kind: ColumnKind
    count: int
    missing: int
    distinct: int | None = None
    min: float | str | None = None
    max: float | str | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[str, float] = field(default_factory=dict)
    histogram: Histogram | None = None
    top_values: list[tuple[str, int]] = field(default_factory=list)
    category_counts: dict[str, int] | None = None
    sample: list[float] | None = None
    nan_count: int = 0
    inf_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples become lists), in field order.

        Built shallowly: the lists and dicts are the profile's own (``sample``
        holds up to 10,000 floats per column, and ``dataclasses.asdict`` copied
        each one, seconds on a wide table), so treat the result as read-only.
        """
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        histogram = self.histogram
        if histogram is not None:
            data["histogram"] = {"edges": histogram.edges, "counts": histogram.counts}
        data["top_values"] = [[value, count] for value, count in self.top_values]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnProfile:
        """Rebuild a profile written by :meth:`to_dict`."""
        values = dict(data)
        histogram = values.pop("histogram", None)
        top = values.pop("top_values", [])
        return cls(
            **values,
            histogram=Histogram(**histogram) if histogram is not None else None,
            top_values=[(str(value), int(count)) for value, count in top],
        )


@dataclass(frozen=True)
class DatasetProfile:
    """Statistics of a whole table: its row count and one profile per column, in order."""

    rows: int
    columns: list[ColumnProfile]

    def column(self, name: str) -> ColumnProfile:
        """The profile of column ``name``; raises ``KeyError`` naming the known columns."""
        for column in self.columns:
            if column.name == name:
                return column
        known = ", ".join(c.name for c in self.columns)
        raise KeyError(f"no column {name!r} in the profile (columns: {known})")

    @property
    def names(self) -> list[str]:
        """Column names in table order."""
        return [column.name for column in self.columns]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {"rows": self.rows, "columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetProfile:
        """Rebuild a profile written by :meth:`to_dict`."""
        try:
            return cls(
                rows=int(data["rows"]),
                columns=[ColumnProfile.from_dict(c) for c in data["columns"]],
            )
        except (KeyError, TypeError) as exc:
            raise ValidationFailed(f"not a dataset profile: {exc}") from exc

    def to_json(self) -> bytes:
        """UTF-8 JSON of :meth:`to_dict`."""
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str) -> DatasetProfile:
        """Rebuild a profile written by :meth:`to_json`."""
        return cls.from_dict(orjson.loads(data))


def profile_table(table: pa.Table) -> DatasetProfile:
    """Profile every column of ``table`` (vectorised; numeric columns sorted once each).

    >>> import pyarrow as pa
    >>> p = profile_table(pa.table({"x": [1.0, 2.0, None], "c": ["a", "b", "a"]}))
    >>> p.column("x").missing, p.column("x").mean, p.column("c").top_values
    (1, 1.5, [('a', 2), ('b', 1)])
    """
    columns = list(zip(table.schema.names, table.columns, strict=True))
    if len(columns) <= 1:
        profiles = [_profile_column(name, column) for name, column in columns]
    else:
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            profiles = list(pool.map(lambda nc: _profile_column(*nc), columns))
    return DatasetProfile(rows=table.num_rows, columns=profiles)


def _profile_column(name: str, column: pa.ChunkedArray) -> ColumnProfile:
    kind_type = column.type
    if pa.types.is_dictionary(kind_type):
        if _is_string(kind_type.value_type):
            return _categorical(name, str(kind_type), column)
        column = column.cast(kind_type.value_type)
    data_type = column.type
    if pa.types.is_integer(data_type) or pa.types.is_floating(data_type):
        return _numeric(name, str(kind_type), column)
    if pa.types.is_decimal(data_type):
        return _numeric(name, str(kind_type), column.cast(pa.float64()))
    if pa.types.is_boolean(data_type) or _is_string(data_type):
        return _categorical(name, str(kind_type), column)
    if pa.types.is_date(data_type) or pa.types.is_timestamp(data_type):
        return _datetime(name, str(kind_type), column)
    return ColumnProfile(
        name=name,
        type=str(kind_type),
        kind="other",
        count=len(column) - column.null_count,
        missing=column.null_count,
    )


def _is_string(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_string_view(data_type)
    )


def _to_float_numpy(column: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    if column.null_count:
        column = pc.drop_null(column)
    values: npt.NDArray[np.float64] = column.to_numpy()
    return values if values.dtype == np.float64 else values.astype(np.float64)


def _numeric(name: str, type_name: str, column: pa.ChunkedArray) -> ColumnProfile:
    values = _to_float_numpy(column)
    finite_mask = np.isfinite(values)
    if finite_mask.all():
        finite = values
        nan_count = inf_count = distinct_extra = 0
    else:
        finite = values[finite_mask]
        nan_count = int(np.isnan(values).sum())
        inf_count = int(values.size - finite.size - nan_count)
        distinct_extra = int(np.any(values == np.inf)) + int(np.any(values == -np.inf))
    owned = bool(finite.flags.owndata and finite.flags.writeable)  # not Arrow's memory
    ordered = _sorted(finite, integer=pa.types.is_integer(column.type), in_place=owned)
    base = ColumnProfile(
        name=name,
        type=type_name,
        kind="numeric",
        count=int(values.size),
        missing=column.null_count,
        nan_count=nan_count,
        inf_count=inf_count,
        distinct=distinct_extra,
    )
    if ordered.size == 0:
        return base
    steps = ordered[1:] != ordered[:-1]
    distinct = int(np.count_nonzero(steps)) + 1
    category_counts = None
    top: list[tuple[str, int]] = []
    is_integer = pa.types.is_integer(column.type)
    if is_integer and distinct <= INTEGER_CATEGORY_LIMIT:
        bounds = np.concatenate(([0], np.flatnonzero(steps) + 1, [ordered.size]))
        labels = [str(int(v)) for v in ordered[bounds[:-1]]]
        counts = np.diff(bounds).tolist()
        category_counts = dict(zip(labels, counts, strict=True))
        top = _top(labels, counts)
    mean, std = _moments(ordered)
    return replace(
        base,
        distinct=distinct + distinct_extra,
        min=float(ordered[0]),
        max=float(ordered[-1]),
        mean=mean,
        std=std,
        quantiles=_quantiles(ordered),
        histogram=_histogram(ordered),
        top_values=top,
        category_counts=category_counts,
        sample=_sample(ordered),
    )


def _sorted(
    values: npt.NDArray[np.float64], *, integer: bool, in_place: bool = False
) -> npt.NDArray[np.float64]:
    """``np.sort(values)``, without sorting when it can: the sort is most of a column's profile.

    Values already in order (row ids, times) are used as they are; integers
    spanning fewer values than there are rows are counted (``bincount``) and
    spelled out in order, which gives the same array in linear time. With
    ``in_place``, ``values`` (a temporary of the caller's) is sorted where it
    lies instead of into a new array.
    """
    if values.size < 2 or bool((values[1:] >= values[:-1]).all()):
        return values
    if integer:
        low, high = float(values.min()), float(values.max())
        if high - low < values.size and abs(low) < _EXACT_INTEGER and abs(high) < _EXACT_INTEGER:
            counts = np.bincount((values - low).astype(np.int64))
            return np.repeat(np.arange(low, high + 1, dtype=np.float64), counts)
    if in_place:
        values.sort()
        return values
    return np.sort(values)


def _moments(ordered: npt.NDArray[np.float64]) -> tuple[float | None, float | None]:
    """Mean and sample std; values near the float limit are scaled so the sums do not overflow."""
    scale = max(abs(float(ordered[0])), abs(float(ordered[-1])))
    scaled = ordered / scale if scale > _SAFE_MAGNITUDE else ordered
    factor = scale if scale > _SAFE_MAGNITUDE else 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(np.mean(scaled)) * factor
        std = float(np.std(scaled, ddof=1)) * factor if ordered.size > 1 else None
    return _finite(mean), _finite(std)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _quantiles(ordered: npt.NDArray[np.float64]) -> dict[str, float]:
    positions = np.array(list(QUANTILES.values())) * (ordered.size - 1)
    low = np.floor(positions).astype(np.int64)
    high = np.minimum(low + 1, ordered.size - 1)
    fraction = positions - low
    below, above = ordered[low], ordered[high]
    with np.errstate(over="ignore", invalid="ignore"):
        values = below + (above - below) * fraction
        wide = ~np.isfinite(values)  # a gap beyond float range: weigh the ends instead
        values[wide] = below[wide] * (1 - fraction[wide]) + above[wide] * fraction[wide]
    return {key: float(v) for key, v in zip(QUANTILES, values, strict=True)}


def _histogram(ordered: npt.NDArray[np.float64]) -> Histogram:
    low, high = float(ordered[0]), float(ordered[-1])
    if low == high:
        return Histogram(edges=[low, high], counts=[int(ordered.size)])
    with np.errstate(over="ignore", invalid="ignore"):
        edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    if not np.all(np.isfinite(edges)):  # a span at the edge of float range: weigh the ends
        steps = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
        edges = low * (1 - steps) + high * steps
    inner = np.searchsorted(ordered, edges[1:-1], side="left")
    bounds = np.concatenate(([0], inner, [ordered.size]))
    return Histogram(edges=edges.tolist(), counts=np.diff(bounds).tolist())


def _sample(ordered: npt.NDArray[np.float64]) -> list[float]:
    if ordered.size <= SAMPLE_SIZE:
        return list(ordered.tolist())
    rng = np.random.default_rng(SAMPLE_SEED)
    picks = np.sort(rng.choice(ordered.size, size=SAMPLE_SIZE, replace=False))
    return list(ordered[picks].tolist())


def _top(labels: list[str], counts: list[int]) -> list[tuple[str, int]]:
    """The most frequent values, ties broken by value so the order is stable."""
    order = sorted(range(len(labels)), key=lambda i: (-counts[i], labels[i]))[:TOP_VALUES]
    return [(labels[i], counts[i]) for i in order]


def _categorical(name: str, type_name: str, column: pa.ChunkedArray) -> ColumnProfile:
    is_boolean = pa.types.is_boolean(column.type)
    counted = pc.value_counts(column)  # nulls make one entry, dropped here (not a copy of all)
    if column.null_count:
        counted = counted.filter(pc.is_valid(counted.field("values")))
    raw_values = counted.field("values")
    if is_boolean:
        labels = ["true" if v else "false" for v in raw_values.to_pylist()]
    else:
        labels = [str(v) for v in raw_values.to_pylist()]
    counts = counted.field("counts").to_numpy()
    top_idx = _top_indices(labels, counts)
    top = [(labels[i], int(counts[i])) for i in top_idx]
    category_counts = None
    if len(labels) <= CATEGORY_CAP:
        category_counts = dict(zip(labels, counts.tolist(), strict=True))
    count = len(column) - column.null_count
    return ColumnProfile(
        name=name,
        type=type_name,
        kind="boolean" if is_boolean else "categorical",
        count=count,
        missing=column.null_count,
        distinct=len(labels),
        mean=(category_counts or {}).get("true", 0) / count if is_boolean and count else None,
        top_values=top,
        category_counts=category_counts,
    )


def _top_indices(labels: list[str], counts: npt.NDArray[np.int64]) -> list[int]:
    if len(labels) > 4 * TOP_VALUES:  # narrow to the candidates before the exact, stable sort
        threshold = np.partition(counts, -TOP_VALUES)[-TOP_VALUES]
        candidates = np.flatnonzero(counts >= threshold).tolist()
    else:
        candidates = list(range(len(labels)))
    candidates.sort(key=lambda i: (-int(counts[i]), labels[i]))
    return candidates[:TOP_VALUES]


def _datetime(name: str, type_name: str, column: pa.ChunkedArray) -> ColumnProfile:
    bounds = pc.min_max(column)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    return ColumnProfile(
        name=name,
        type=type_name,
        kind="datetime",
        count=len(column) - column.null_count,
        missing=column.null_count,
        distinct=int(pc.count_distinct(column, mode="only_valid").as_py()),
        min=low.isoformat() if low is not None else None,
        max=high.isoformat() if high is not None else None,
    )
