"""Frames enter the drift engine as Arrow columns, whatever library made them.

pandas and polars frames are converted once at the edge (polars without being
imported: a polars frame knows how to become Arrow itself). A column is then
read either as numbers (finite float64 values; nulls, NaN and infinities
counted as missing, as Evidently drops them) or as categories (labels and
counts, nulls counted as missing), with Arrow and numpy kernels only.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.errors import ValidationFailed

__all__ = [
    "ColumnType",
    "FrameLike",
    "Labels",
    "Numbers",
    "as_table",
    "category_counts",
    "column_type",
    "finite_values",
]

# Any: a pandas or polars DataFrame, accepted without importing either library.
FrameLike: TypeAlias = pa.Table | pa.RecordBatch | Any
ColumnType = Literal["numeric", "categorical", "other"]
Numbers: TypeAlias = npt.NDArray[np.float64]
Labels: TypeAlias = npt.NDArray[np.object_]


def as_table(frame: FrameLike, *, side: str) -> pa.Table:
    """``frame`` as a pyarrow Table (pandas index dropped, polars via ``to_arrow``)."""
    if isinstance(frame, pa.Table):
        return frame
    if isinstance(frame, pa.RecordBatch):
        return pa.Table.from_batches([frame])
    module = type(frame).__module__.split(".")[0]
    if module == "pandas":
        return pa.Table.from_pandas(frame, preserve_index=False)
    if module == "polars":
        table = frame.to_arrow()
        if isinstance(table, pa.Table):
            return table
    raise ValidationFailed(
        f"the {side} data is a {type(frame).__name__}; give a pandas or polars DataFrame "
        "or a pyarrow Table"
    )


def column_type(data_type: pa.DataType) -> ColumnType:
    """How a column of ``data_type`` is tested: as numbers, as categories, or not at all."""
    if pa.types.is_dictionary(data_type):
        data_type = data_type.value_type
    if pa.types.is_integer(data_type) or pa.types.is_floating(data_type):
        return "numeric"
    if pa.types.is_decimal(data_type):
        return "numeric"
    if (
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_string_view(data_type)
        or pa.types.is_boolean(data_type)
    ):
        return "categorical"
    return "other"


def finite_values(column: pa.ChunkedArray) -> tuple[Numbers, int]:
    """The finite values of a numeric column as float64, and how many were missing.

    Nulls, NaN and infinities are missing: the tests compare distributions of
    real values (Evidently drops the same), and the count is reported beside.
    """
    if pa.types.is_null(column.type):
        return np.zeros(0, dtype=np.float64), len(column)
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_decimal(column.type):
        column = column.cast(pa.float64())
    nulls = column.null_count
    if nulls:
        column = pc.drop_null(column)
    values: Numbers = column.to_numpy()
    if values.dtype != np.float64:
        values = values.astype(np.float64)
    finite = np.isfinite(values)
    if finite.all():
        return values, nulls
    return values[finite], nulls + int(values.size - np.count_nonzero(finite))


def category_counts(column: pa.ChunkedArray) -> tuple[Labels, npt.NDArray[np.int64], int]:
    """Each category's label and count, and the number of missing values.

    Labels are text (booleans ``"true"``/``"false"``), so a reference and a
    window built by different libraries compare equal. Numeric columns tested
    as categories are counted by value instead (see ``ColumnReference``).
    """
    if pa.types.is_null(column.type):
        return np.zeros(0, dtype=object), np.zeros(0, dtype=np.int64), len(column)
    nulls = column.null_count
    counted = pc.value_counts(pc.drop_null(column) if nulls else column)
    raw = counted.field("values")
    if pa.types.is_dictionary(raw.type):
        raw = raw.cast(raw.type.value_type)
    if pa.types.is_boolean(raw.type):
        labels = ["true" if v else "false" for v in raw.to_pylist()]
    else:
        labels = [str(v) for v in raw.to_pylist()]
    counts: npt.NDArray[np.int64] = counted.field("counts").to_numpy().astype(np.int64)
    return np.array(labels, dtype=object), counts, nulls
