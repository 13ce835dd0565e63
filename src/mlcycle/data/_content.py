"""The canonical form of a table and its content digest.

Two tables with the same rows in the same order and the same schema get the
same digest, however they were chunked or typed on the way in: types are
mapped to what Delta stores (``string`` and views to ``large_string``,
dictionaries to their values, nanosecond timestamps to microseconds, every
time zone to UTC) and schema metadata (pandas' index notes) is dropped.

The digest (``sha256:``, definition 2) is SHA-256 over a version tag, the
canonical schema's IPC bytes, the row count and one SHA-256 per column, the
columns hashed on a small thread pool (``hashlib`` releases the GIL for large
inputs). A column's hash reads its Arrow buffers in place, chunk after chunk,
so chunking and array offsets do not matter: the validity as one byte per row
(only if the column has nulls), then the values of the non-null rows - the
data buffer of fixed-width types, one byte per boolean, and for strings and
binaries the lengths (int64) and the bytes. Other types (lists, structs) hash
their Arrow IPC stream, combined into one chunk. Definition 1 hashed the IPC
stream of the whole table, copying it first; versions recorded with it keep
their digests (ADR 0007).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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


_TAG = b"mlcycle-content-digest/2\0"
_THREADS = 2


def content_digest(table: pa.Table) -> Digest:
    """SHA-256 of the canonical table: schema, row count and every column's values, in order."""
    table = canonical(table)
    columns = table.columns
    if len(columns) > 1 and table.num_rows * len(columns) >= 100_000:
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            hashes = list(pool.map(_column_digest, columns))
    else:
        hashes = [_column_digest(c) for c in columns]
    digest = hashlib.sha256(_TAG)
    digest.update(table.schema.serialize())
    digest.update(table.num_rows.to_bytes(8, "little"))
    for column_hash in hashes:
        digest.update(column_hash)
    return Digest("sha256:" + digest.hexdigest())


def _column_digest(column: pa.ChunkedArray) -> bytes:
    type_ = column.type
    validity = hashlib.sha256(b"validity\0")
    values = hashlib.sha256(b"values\0")
    lengths = hashlib.sha256(b"lengths\0")
    if not _in_place(type_):
        combined = column.combine_chunks()
        sink = pa.BufferOutputStream()
        batch = pa.record_batch([combined], names=["c"])
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        values.update(sink.getvalue())
        return values.digest()
    for chunk in column.chunks:
        if column.null_count:
            validity.update(pc.is_valid(chunk).to_numpy(zero_copy_only=False).view(np.uint8))
        present = pc.drop_null(chunk) if chunk.null_count else chunk  # values under nulls vary
        _hash_values(present, values, lengths)
    return validity.digest() + values.digest() + lengths.digest()


def _in_place(type_: pa.DataType) -> bool:
    return (
        pa.types.is_boolean(type_)
        or _byte_width(type_) > 0
        or pa.types.is_large_string(type_)
        or pa.types.is_large_binary(type_)
        or pa.types.is_string(type_)
        or pa.types.is_binary(type_)
    )


def _byte_width(type_: pa.DataType) -> int:
    if pa.types.is_boolean(type_) or pa.types.is_null(type_):
        return 0
    try:
        width = type_.bit_width
    except ValueError:  # variable width
        return 0
    return width // 8 if width % 8 == 0 else 0


def _hash_values(chunk: pa.Array, values: hashlib._Hash, lengths: hashlib._Hash) -> None:
    n, start = len(chunk), chunk.offset
    if n == 0:
        return
    type_ = chunk.type
    if pa.types.is_boolean(type_):
        values.update(chunk.to_numpy(zero_copy_only=False).view(np.uint8))
        return
    width = _byte_width(type_)
    buffers = chunk.buffers()
    if width:
        data = buffers[1]
        assert data is not None  # a fixed-width array with rows has data
        values.update(data.slice(start * width, n * width))
        return
    large = pa.types.is_large_string(type_) or pa.types.is_large_binary(type_)
    offsets_buffer, data = buffers[1], buffers[2]
    assert offsets_buffer is not None  # a string array with rows has offsets
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64 if large else np.int32)
    offsets = offsets[start : start + n + 1]
    lengths.update(np.diff(offsets).astype(np.int64, copy=False).tobytes())
    first, last = int(offsets[0]), int(offsets[-1])
    if data is not None and last > first:
        values.update(data.slice(first, last - first))
