"""Data frames enter validation as Arrow tables, whatever library made them.

pandas and polars frames are converted once at the edge (polars without being
imported: a polars frame knows how to become Arrow itself), so every check
runs on the same Arrow kernels.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import pyarrow as pa

from mlcycle.errors import ValidationFailed

__all__ = ["TableLike", "to_arrow"]

# Any: a pandas or polars DataFrame, accepted without importing either library.
TableLike: TypeAlias = pa.Table | pa.RecordBatch | Any


def to_arrow(data: TableLike) -> pa.Table:
    """``data`` as a pyarrow Table (pandas index dropped, polars via ``to_arrow``)."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    module = type(data).__module__.split(".")[0]
    if module == "pandas":
        return pa.Table.from_pandas(data, preserve_index=False)
    if module == "polars":
        table = data.to_arrow()
        if isinstance(table, pa.Table):
            return table
    raise ValidationFailed(
        f"expected a pyarrow Table, pandas or polars DataFrame, not {type(data).__name__}"
    )
