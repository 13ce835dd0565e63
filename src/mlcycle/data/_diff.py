"""What changed between two versions of a dataset: rows, schema and column distributions.

Rows are matched by the dataset's key when it has one (a row whose key is in
both versions with other values is *changed*); without a key, rows are
compared as a multiset of row hashes, so a changed row counts as one removed
and one added. Row hashes are pandas' vectorised ``hash_pandas_object`` over
the columns both versions share; no per-row Python runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["ColumnChange", "DatasetDiff", "diff_tables"]


@dataclass(frozen=True, slots=True)
class ColumnChange:
    """How one numeric column's distribution moved between the versions."""

    name: str
    mean_old: float | None
    mean_new: float | None
    std_old: float | None
    std_new: float | None
    missing_old: float
    missing_new: float

    @property
    def mean_delta(self) -> float | None:
        """``mean_new - mean_old`` (``None`` when either is unknown)."""
        if self.mean_old is None or self.mean_new is None:
            return None
        return self.mean_new - self.mean_old


@dataclass(frozen=True, slots=True)
class DatasetDiff:
    """Rows added, removed and changed, schema changes and distribution changes."""

    name: str
    old: int
    new: int
    key: tuple[str, ...]
    rows_old: int
    rows_new: int
    rows_added: int
    rows_removed: int
    rows_changed: int
    columns_added: list[tuple[str, str]] = field(default_factory=list)
    columns_removed: list[tuple[str, str]] = field(default_factory=list)
    types_changed: list[tuple[str, str, str]] = field(default_factory=list)
    distributions: list[ColumnChange] = field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        """Whether the versions hold the same rows under the same schema."""
        return not (
            self.rows_added
            or self.rows_removed
            or self.rows_changed
            or self.columns_added
            or self.columns_removed
            or self.types_changed
        )

    def to_dict(self) -> dict[str, Any]:  # Any: JSON values
        """The diff as JSON-able dicts."""
        return {
            "name": self.name,
            "old": self.old,
            "new": self.new,
            "key": list(self.key),
            "rows": {
                "old": self.rows_old,
                "new": self.rows_new,
                "added": self.rows_added,
                "removed": self.rows_removed,
                "changed": self.rows_changed,
            },
            "columns_added": [list(c) for c in self.columns_added],
            "columns_removed": [list(c) for c in self.columns_removed],
            "types_changed": [list(c) for c in self.types_changed],
            "distributions": [
                {**{k: getattr(c, k) for k in c.__slots__}, "mean_delta": c.mean_delta}
                for c in self.distributions
            ],
        }


def _row_hashes(table: pa.Table, columns: Sequence[str]) -> np.ndarray[Any, Any]:
    import pandas as pd  # noqa: PLC0415  (pandas loads when a diff is asked for)

    if not columns:
        return np.zeros(table.num_rows, dtype=np.uint64)
    frame = table.select(list(columns)).to_pandas()
    return np.asarray(pd.util.hash_pandas_object(frame, index=False), dtype=np.uint64)


def _multiset_difference(left: np.ndarray[Any, Any], right: np.ndarray[Any, Any]) -> int:
    """How many elements of ``left`` are not matched by one of ``right``."""
    values, counts = np.unique(left, return_counts=True)
    other, other_counts = np.unique(right, return_counts=True)
    position = np.searchsorted(other, values)
    position = np.clip(position, 0, max(len(other) - 1, 0))
    matched = np.zeros_like(counts)
    if len(other):
        found = other[position] == values
        matched[found] = other_counts[position[found]]
    return int(np.maximum(counts - matched, 0).sum())


def _row_changes(
    old: pa.Table, new: pa.Table, key: Sequence[str], common: Sequence[str]
) -> tuple[int, int, int]:
    rows_old, rows_new = _row_hashes(old, common), _row_hashes(new, common)
    if not key or not set(key) <= set(common):
        return _multiset_difference(rows_new, rows_old), _multiset_difference(rows_old, rows_new), 0
    keys_old, keys_new = _row_hashes(old, key), _row_hashes(new, key)
    in_old = np.isin(keys_new, keys_old)
    added = int((~in_old).sum())
    removed = int((~np.isin(keys_old, keys_new)).sum())
    by_key = dict(zip(keys_old.tolist(), rows_old.tolist(), strict=True))
    shared = np.flatnonzero(in_old)
    before = np.fromiter((by_key[k] for k in keys_new[shared].tolist()), dtype=np.uint64)
    changed = int((before != rows_new[shared]).sum())
    return added, removed, changed


def _stats(column: pa.ChunkedArray) -> tuple[float | None, float | None, float]:
    missing = column.null_count / len(column) if len(column) else 0.0
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        return None, None, missing
    mean = pc.mean(column).as_py()
    std = pc.stddev(column, ddof=1).as_py() if len(column) - column.null_count > 1 else None
    return mean, std, missing


def diff_tables(
    old: pa.Table, new: pa.Table, *, name: str, versions: tuple[int, int], key: Sequence[str]
) -> DatasetDiff:
    """Compare two versions' tables."""
    old_types = {f.name: str(f.type) for f in old.schema}
    new_types = {f.name: str(f.type) for f in new.schema}
    common = [c for c in new.column_names if c in old_types and old_types[c] == new_types[c]]
    added, removed, changed = _row_changes(old, new, key, common)
    distributions = []
    for column in common:
        mean_old, std_old, missing_old = _stats(old.column(column))
        mean_new, std_new, missing_new = _stats(new.column(column))
        distributions.append(
            ColumnChange(column, mean_old, mean_new, std_old, std_new, missing_old, missing_new)
        )
    return DatasetDiff(
        name=name,
        old=versions[0],
        new=versions[1],
        key=tuple(key),
        rows_old=old.num_rows,
        rows_new=new.num_rows,
        rows_added=added,
        rows_removed=removed,
        rows_changed=changed,
        columns_added=[(c, t) for c, t in new_types.items() if c not in old_types],
        columns_removed=[(c, t) for c, t in old_types.items() if c not in new_types],
        types_changed=[
            (c, old_types[c], t)
            for c, t in new_types.items()
            if c in old_types and old_types[c] != t
        ],
        distributions=distributions,
    )
