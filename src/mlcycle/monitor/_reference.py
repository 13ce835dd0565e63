"""The reference side of drift, prepared once and reused for every window.

Every drift test compares a window against the same reference, so the
reference is read once: each numeric column's finite values are sorted (KS
and Wasserstein then only sort the window and binary-search the reference),
its population standard deviation is kept for the normed Wasserstein distance,
and each categorical column is reduced to its category counts. A
:class:`ReferenceStats` is built from a frame (exact), from a stored dataset
profile (numbers from its bounded sorted sample, categories exact), or read
back from the bytes :meth:`ReferenceStats.write` produced.

The serialised form is a short header (magic line, JSON length, JSON with
every column's counts and categories) followed by the raw little-endian
float64 buffers of the sorted numeric columns, so reading it back costs one
pass over the bytes and no parsing of numbers.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, Literal

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa

from mlcycle.data import DatasetProfile
from mlcycle.errors import ValidationFailed
from mlcycle.monitor._frames import (
    FrameLike,
    Labels,
    Numbers,
    as_table,
    category_counts,
    column_type,
    finite_values,
)

__all__ = ["FORMAT", "ColumnReference", "ReferenceStats"]

FORMAT = "mlcycle.monitor.reference/1"
_MAGIC = b"MLCYCLE-REFERENCE-1\n"
_LENGTH = struct.Struct("<Q")
_THREADS = 2
_SAFE_MAGNITUDE = 1e150

Kind = Literal["numeric", "categorical"]


@dataclass(frozen=True, eq=False)
class ColumnReference:
    """One reference column, ready for any test.

    ``values`` are the sorted finite values of a numeric column; ``labels``
    and ``counts`` a categorical column's categories. ``count`` is the number
    of values the tests see, ``missing`` the nulls, NaN and infinities left
    out. ``sampled`` is true when ``values`` are a profile's sample rather
    than every value.
    """

    name: str
    kind: Kind
    type: str
    count: int
    missing: int
    values: Numbers | None = None
    labels: Labels | None = None
    counts: npt.NDArray[np.int64] | None = None
    std: float | None = None
    sampled: bool = False

    @functools.cached_property
    def distinct(self) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
        """The distinct values (or labels) and their counts, read off the sorted values."""
        if self.values is None:
            assert self.labels is not None, "a categorical reference has labels"
            assert self.counts is not None, "and counts"
            return self.labels, self.counts
        ordered = self.values
        if ordered.size == 0:
            return ordered, np.zeros(0, dtype=np.int64)
        starts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
        bounds = np.concatenate(([0], starts, [ordered.size]))
        return ordered[bounds[:-1]], np.diff(bounds).astype(np.int64)

    def header(self) -> dict[str, Any]:  # Any: JSON values
        """Everything but the numeric values, as JSON-ready values."""
        return {
            "name": self.name,
            "kind": self.kind,
            "type": self.type,
            "count": self.count,
            "missing": self.missing,
            "std": self.std,
            "sampled": self.sampled,
            "values": None if self.values is None else int(self.values.size),
            "labels": None if self.labels is None else self.labels.tolist(),
            "counts": None if self.counts is None else self.counts.tolist(),
        }


@dataclass(frozen=True)
class ReferenceStats:
    """Sorted numeric columns and category counts of a reference, reused for every window.

    >>> import pandas as pd
    >>> ref = ReferenceStats.from_frame(pd.DataFrame({"x": [3.0, 1.0, 2.0], "c": ["a", "b", "a"]}))
    >>> ref.column("x").values.tolist(), ref.column("c").kind, ref.rows
    ([1.0, 2.0, 3.0], 'categorical', 3)
    """

    rows: int
    columns: dict[str, ColumnReference]
    source: str = "frame"
    digest: str | None = field(default=None, compare=False)

    @property
    def names(self) -> list[str]:
        """Column names, in reference order."""
        return list(self.columns)

    @property
    def sampled(self) -> bool:
        """Whether any numeric column holds a sample instead of every value."""
        return any(column.sampled for column in self.columns.values())

    def column(self, name: str) -> ColumnReference:
        """The reference of column ``name``; the error lists the columns there are."""
        try:
            return self.columns[name]
        except KeyError:
            raise ValidationFailed(
                f"the reference has no column {name!r}; it has {self.names}"
            ) from None

    @classmethod
    def from_frame(
        cls,
        frame: FrameLike,
        *,
        columns: Sequence[str] | None = None,
        source: str = "frame",
    ) -> ReferenceStats:
        """Sort every numeric column and count every categorical one (two threads).

        ``columns`` limits the reference to those columns; columns of other
        types (dates, lists) are left out, as no drift test reads them.
        """
        table = as_table(frame, side="reference")
        names = _chosen(table, columns)
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            built = list(pool.map(lambda n: _build_column(n, table.column(n)), names))
        return cls(
            rows=table.num_rows,
            columns={c.name: c for c in built if c is not None},
            source=source,
        )

    @classmethod
    def from_profile(cls, profile: DatasetProfile, *, source: str = "profile") -> ReferenceStats:
        """A reference from a stored dataset profile, without reading the data.

        Categories are exact (the profile keeps every category's count, up to
        1,000 categories); numbers come from the profile's sorted sample of up
        to 10,000 values, so KS and Wasserstein compare against that sample
        and the report marks those columns as sampled.
        """
        built: dict[str, ColumnReference] = {}
        for column in profile.columns:
            if column.kind == "numeric" and column.sample is not None:
                values = np.asarray(column.sample, dtype=np.float64)
                missing = column.missing + column.nan_count + column.inf_count
                valid = column.count - column.nan_count - column.inf_count
                built[column.name] = ColumnReference(
                    name=column.name,
                    kind="numeric",
                    type=column.type,
                    count=int(values.size),
                    missing=missing,
                    values=values,
                    std=_population_std(column.std, valid),
                    sampled=values.size < valid,
                )
            elif column.kind in {"categorical", "boolean"} and column.category_counts:
                counts = column.category_counts
                built[column.name] = ColumnReference(
                    name=column.name,
                    kind="categorical",
                    type=column.type,
                    count=sum(counts.values()),
                    missing=column.missing,
                    labels=np.array(list(counts), dtype=object),
                    counts=np.array(list(counts.values()), dtype=np.int64),
                )
        return cls(rows=profile.rows, columns=built, source=source)

    def write(self, sink: IO[bytes]) -> None:
        """Write the reference in the format :meth:`read` reads."""
        header = orjson.dumps(
            {
                "format": FORMAT,
                "rows": self.rows,
                "source": self.source,
                "columns": [c.header() for c in self.columns.values()],
            }
        )
        sink.write(_MAGIC + _LENGTH.pack(len(header)) + header)
        for column in self.columns.values():
            if column.values is not None:
                sink.write(column.values.astype("<f8", copy=False).tobytes())

    @classmethod
    def read(cls, source: IO[bytes], *, digest: str | None = None) -> ReferenceStats:
        """Read what :meth:`write` wrote; the stream is read to its end (which verifies it)."""
        magic = source.read(len(_MAGIC))
        if magic != _MAGIC:
            raise ValidationFailed(
                f"not a drift reference written by mlcycle ({FORMAT}); rebuild it with "
                "ReferenceStats.from_frame"
            )
        (length,) = _LENGTH.unpack(_exactly(source, _LENGTH.size))
        header = orjson.loads(_exactly(source, length))
        columns: dict[str, ColumnReference] = {}
        for entry in header["columns"]:
            values = None
            if entry["values"] is not None:
                raw = _exactly(source, 8 * entry["values"])
                values = np.frombuffer(raw, dtype="<f8").astype(np.float64, copy=False)
            columns[entry["name"]] = _column_from_header(entry, values)
        if source.read(1):
            raise ValidationFailed("the drift reference has bytes after its last column")
        return cls(rows=header["rows"], columns=columns, source=header["source"], digest=digest)


def _exactly(source: IO[bytes], size: int) -> bytes:
    data = source.read(size)
    if len(data) != size:
        raise ValidationFailed("the drift reference ends early; rebuild it")
    return data


def _column_from_header(entry: Mapping[str, Any], values: Numbers | None) -> ColumnReference:
    labels, counts = entry["labels"], entry["counts"]
    return ColumnReference(
        name=entry["name"],
        kind=entry["kind"],
        type=entry["type"],
        count=entry["count"],
        missing=entry["missing"],
        values=values,
        labels=None if labels is None else np.array(labels, dtype=object),
        counts=None if counts is None else np.array(counts, dtype=np.int64),
        std=entry["std"],
        sampled=entry["sampled"],
    )


def _chosen(table: pa.Table, columns: Iterable[str] | None) -> list[str]:
    if columns is None:
        return list(table.column_names)
    names = list(columns)
    missing = [name for name in names if name not in table.column_names]
    if missing:
        raise ValidationFailed(
            f"the reference has no column(s) {missing}; it has {table.column_names}"
        )
    return names


def _build_column(name: str, column: pa.ChunkedArray) -> ColumnReference | None:
    kind = column_type(column.type)
    if kind == "numeric":
        values, missing = finite_values(column)
        ordered = np.sort(values)
        return ColumnReference(
            name=name,
            kind="numeric",
            type=str(column.type),
            count=int(ordered.size),
            missing=missing,
            values=ordered,
            std=_std(ordered),
        )
    if kind == "categorical":
        labels, counts, missing = category_counts(column)
        return ColumnReference(
            name=name,
            kind="categorical",
            type=str(column.type),
            count=int(counts.sum()),
            missing=missing,
            labels=labels,
            counts=counts,
        )
    return None


def _std(ordered: Numbers) -> float | None:
    """The population std; values near the float limit are scaled so the sums cannot overflow."""
    if ordered.size == 0:
        return None
    scale = max(abs(float(ordered[0])), abs(float(ordered[-1])), 1.0)
    if scale < _SAFE_MAGNITUDE:
        return float(np.std(ordered))
    return float(np.std(ordered / scale)) * scale


def _population_std(sample_std: float | None, count: int) -> float | None:
    """The profile keeps the sample std (``ddof=1``); the normed Wasserstein uses ``ddof=0``."""
    if sample_std is None or count < 2:
        return 0.0 if count == 1 else None
    return float(sample_std * np.sqrt((count - 1) / count))
