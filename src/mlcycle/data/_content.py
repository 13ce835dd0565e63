"""The canonical form of a table and its content digest.

Two tables with the same rows in the same order and the same schema get the
same digest, however they were chunked or typed on the way in: types are
mapped to what Delta stores (``string`` and views to ``large_string``,
dictionaries to their values, nanosecond timestamps to microseconds, every
time zone to UTC) and schema metadata (pandas' index notes) is dropped. The
digest is SHA-256 over the Arrow IPC stream of the canonical table, which
hashes at about a gigabyte a second.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

from mlcycle.errors import ValidationFailed
from mlcycle.ids import Digest

__all__ = ["canonical", "content_digest"]


def _canonical_type(type_: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(type_):
        return _canonical_type(type_.value_type)
    if pa.types.is_string(type_) or pa.types.is_string_view(type_):
        return pa.large_string()
    if pa.types.is_binary(type_) or pa.types.is_binary_view(type_):
        return pa.large_binary()
    if pa.types.is_timestamp(type_):
        unit = "us" if type_.unit == "ns" else type_.unit
        unit = "us" if unit in {"s", "ms"} else unit
        return pa.timestamp(unit, tz="UTC" if type_.tz else None)
    return type_


def canonical(table: pa.Table) -> pa.Table:
    """``table`` with Delta's types, one chunk per column and no schema metadata."""
    target = pa.schema(
        [pa.field(f.name, _canonical_type(f.type), f.nullable) for f in table.schema]
    )
    if target != table.schema.remove_metadata():
        try:
            table = table.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValidationFailed(
                f"the data cannot be stored with Delta's types: {exc}; convert the column "
                "(for example nanosecond timestamps to microseconds) first"
            ) from exc
    return table.replace_schema_metadata(None).combine_chunks()


def content_digest(table: pa.Table) -> Digest:
    """SHA-256 of the canonical table's Arrow IPC stream (schema and rows, in order)."""
    table = canonical(table)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return Digest("sha256:" + hashlib.sha256(sink.getvalue()).hexdigest())
