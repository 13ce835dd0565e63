"""How a version's rows become Delta data files, and how a file source is recognised again.

Three things kept out of ``_datasets`` so the write path's choices sit in one place:

- **Who writes the Parquet.** pyarrow's C++ writer, not delta-rs': on 1M x 25
  it took 0.6 of delta-rs' CPU time for files of the same size (measured side
  by side, ADR 0007), and a large table is split into one file per writer
  thread (the writer releases the GIL). The files are written into the table's
  folder first, where no reader sees them, and then one Delta commit adds them
  (``create_table_with_add_actions`` for a new table,
  ``create_write_transaction`` otherwise), with the statistics delta-rs
  would have recorded for plain columns (``numRecords``, ``nullCount``, and
  ``minValues``/``maxValues`` of numbers, booleans and strings). Tables on
  an object store, tables whose schema changes, and column types this path
  does not write (nested, unsigned, ...) go through ``write_deltalake``,
  which evolves the schema and the protocol.
- **Parquet writer options.** LZ4_RAW, and no dictionary for floating-point
  columns and the row-number column: their values rarely repeat, so a writer
  builds a dictionary for every page and then falls back to plain encoding
  (1M x 25 with delta-rs: 0.93 s of CPU for the write with dictionaries,
  0.58 s without, files 5 % smaller). A 64-bit integer column goes without a
  dictionary too when an evenly spaced sample of its rows is almost all
  distinct (``_MOSTLY_DISTINCT``) and a file holds more rows than the
  writer's 1 MiB dictionary page has room for: the writer would fill that
  dictionary and fall back anyway (the synthetic 1M x 25, whose ``id`` and
  ``i6``-``i9`` are such columns: 682 -> 532 ms of CPU for the files, 2 %
  smaller; ``i5``, 99,363 values in a file, keeps its dictionary).
- **Source fingerprints.** A version registered from one file records, in its
  Delta commit, an application transaction (``txn``: ``appId``, ``version``)
  whose id names the file's size, the SHA-256 of its bytes and the reader
  that decoded them, and whose version is the commit's own. Registering a
  file again with ``mode="overwrite"`` hashes it (disk speed, no decoding)
  and asks the table's snapshot for that id: if it names the newest commit,
  which is the latest version's, the content is unchanged and the latest
  version is returned without reading the file. Size and modification time
  alone are not trusted: a file rewritten in place with the same size (or its
  time reset) still differs in its bytes. (``txn`` actions live in the
  snapshot, so the lookup needs no listing of the log, unlike ``history``.)
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = [
    "PARQUET_CODEC",
    "SourceFingerprint",
    "commit_files",
    "file_fingerprint",
    "file_state",
    "fits_as_files",
    "single_file",
    "write_data_files",
    "writer_properties",
]

PARQUET_CODEC: Final = "LZ4_RAW"
"""Parquet compression of dataset files: on 1M x 25 here LZ4_RAW wrote at 113 MB/s against
snappy's 83 MB/s (delta-rs' default) and zstd-1's 71 MB/s, for files within 0.5 % of snappy's
size. Delta readers (delta-rs, Spark, pyarrow, DuckDB) read it."""

_READER: Final = f"pyarrow {pa.__version__}; content digest 2"
"""Same bytes give the same table only with the same reader: a new pyarrow reads them anew."""


_PART_BYTES: Final = 64 << 20
"""A table larger than this (in memory) is written as one file per writer thread."""
_WRITERS: Final = 2
_DICTIONARY_PAGE: Final = 1 << 20
"""pyarrow's ``dictionary_pagesize_limit``: a larger dictionary falls back to plain encoding."""
_SAMPLE_ROWS: Final = 8_192
_MOSTLY_DISTINCT: Final = 0.98
"""Share of distinct values in the sample above which a column holds (far) more distinct
values than the dictionary page takes: 0.98 of 8,192 needs about 200,000 of them, evenly
spread, against the 131,072 int64 values of a 1 MiB page."""


def _without_dictionary(field: pa.Field, plain: tuple[str, ...]) -> bool:
    return pa.types.is_floating(field.type) or field.name in plain


def writer_properties(schema: pa.Schema, *, plain: tuple[str, ...] = ()) -> Any:  # Any: deltalake
    """delta-rs writer options for ``schema``; ``plain``: more columns without a dictionary."""
    from deltalake import ColumnProperties, WriterProperties  # noqa: PLC0415  (heavy; on first use)

    no_dictionary = ColumnProperties(dictionary_enabled=False)
    columns = {field.name: no_dictionary for field in schema if _without_dictionary(field, plain)}
    return WriterProperties(compression=PARQUET_CODEC, column_properties=columns or None)


def _is_plain_type(type_: pa.DataType) -> bool:
    """Types whose Parquet form pyarrow and delta-rs agree on, and whose Delta type is one."""
    if pa.types.is_timestamp(type_):
        return type_.unit == "us" and type_.tz in {None, "UTC"}
    return bool(
        pa.types.is_signed_integer(type_)
        or pa.types.is_float32(type_)
        or pa.types.is_float64(type_)
        or pa.types.is_boolean(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_string(type_)
        or pa.types.is_large_binary(type_)
        or pa.types.is_binary(type_)
        or pa.types.is_date32(type_)
        or pa.types.is_decimal128(type_)
    )


def fits_as_files(uri: str, current: Any, schema: pa.Schema) -> bool:  # Any: a DeltaTable
    """Whether rows of ``schema`` can be written by ``write_data_files`` into ``current``.

    The table must be a local folder (object stores keep delta-rs' writer:
    a remote write waits on the network more than on the encoder), every
    column of a plain type, and an existing table must already have this
    schema (a schema change is delta-rs' job: metadata and protocol).
    """
    if "://" in uri or not all(_is_plain_type(field.type) for field in schema):
        return False
    if current is None:
        return True
    from deltalake import Schema as DeltaSchema  # noqa: PLC0415  (heavy; on first use)

    return bool(DeltaSchema.from_arrow(schema) == current.schema())


def write_data_files(
    uri: str, table: pa.Table, *, plain: tuple[str, ...] = (), part_bytes: int = _PART_BYTES
) -> list[Any]:  # Any: deltalake AddActions
    """Write ``table`` as Parquet files into the folder of the local Delta table at ``uri``.

    Returns the add actions that ``commit_files`` commits; until then no
    reader sees the files. A table over ``part_bytes`` is cut into row ranges,
    one file each, written on parallel threads.
    """
    count = max(1, min(_WRITERS, table.nbytes // part_bytes, table.num_rows))
    step = math.ceil(table.num_rows / count)
    parts = [table.slice(index * step, step) for index in range(count)]
    dictionary = [
        f.name
        for f in table.schema
        if not _without_dictionary(f, plain)
        and not _overflows_dictionary(table.column(f.name), rows=step)
    ]
    if len(parts) == 1:
        return [_write_file(uri, parts[0], dictionary)]
    with ThreadPoolExecutor(max_workers=len(parts)) as pool:  # the writer releases the GIL
        return list(pool.map(lambda part: _write_file(uri, part, dictionary), parts))


def _overflows_dictionary(column: pa.ChunkedArray, *, rows: int) -> bool:
    """Whether a file of ``rows`` rows of this 64-bit integer column would outgrow its dictionary.

    Judged from ``_SAMPLE_ROWS`` evenly spaced rows (the same on every run):
    almost all distinct means far more distinct values than the page holds.
    """
    width = _DICTIONARY_PAGE // 8
    if not pa.types.is_integer(column.type) or column.type.bit_width != 64 or rows <= width:
        return False
    positions = np.arange(_SAMPLE_ROWS, dtype=np.int64) * len(column) // _SAMPLE_ROWS
    sample = pc.drop_null(column.take(pa.array(positions)))
    distinct = np.unique(sample.to_numpy()).size
    return bool(distinct >= _MOSTLY_DISTINCT * _SAMPLE_ROWS)


def _write_file(uri: str, part: pa.Table, dictionary: list[str]) -> Any:  # Any: an AddAction
    from deltalake.transaction import AddAction  # noqa: PLC0415  (heavy; on first use)

    name = f"part-{uuid.uuid4()}-c000.lz4_raw.parquet"
    collected: list[pq.FileMetaData] = []
    options: dict[str, Any] = {  # Any: pyarrow writer options
        "compression": "lz4",  # pyarrow's "lz4" is the LZ4_RAW codec
        "use_dictionary": dictionary,
        "metadata_collector": collected,
    }
    folder = Path(uri)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(part, folder / name, **options)
    size = (folder / name).stat().st_size
    stats = orjson.dumps(_statistics(collected[0], part.schema)).decode()
    return AddAction(name, size, {}, int(time.time() * 1000), True, stats)  # noqa: FBT003


def _statistics(metadata: pq.FileMetaData, schema: pa.Schema) -> dict[str, Any]:  # Any: JSON
    """A file's Delta statistics, from its Parquet footer (one leaf column per plain field)."""
    low: dict[str, Any] = {}  # Any: JSON values
    high: dict[str, Any] = {}  # Any: JSON values
    nulls: dict[str, int] = {}
    for index, field in enumerate(schema):
        chunks = [metadata.row_group(g).column(index) for g in range(metadata.num_row_groups)]
        found = [chunk.statistics for chunk in chunks]
        if not found or any(s is None or not s.has_null_count for s in found):
            continue
        nulls[field.name] = sum(s.null_count for s in found)
        bounds = _bounds(field.type, [s for s in found if s.num_values])
        if bounds is not None:
            low[field.name], high[field.name] = bounds
    return {
        "numRecords": metadata.num_rows,
        "minValues": low,
        "maxValues": high,
        "nullCount": nulls,
    }


def _bounds(type_: pa.DataType, found: list[Any]) -> tuple[Any, Any] | None:  # Any: JSON
    """The smallest and largest value of a column over its row groups, where Delta keeps them."""
    kept = (
        pa.types.is_integer(type_)
        or pa.types.is_floating(type_)
        or pa.types.is_boolean(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_string(type_)
    )
    if not kept or not found or not all(s.has_min_max for s in found):
        return None
    low, high = min(s.min for s in found), max(s.max for s in found)
    if isinstance(low, float) and not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low, high


def commit_files(
    uri: str,
    current: Any,  # Any: a deltalake DeltaTable, or None for a new table
    files: list[Any],  # Any: deltalake AddActions
    *,
    mode: Literal["append", "overwrite"],
    schema: pa.Schema,
    storage_options: dict[str, str] | None,
    configuration: dict[str, str | None],
    commit_properties: Any,  # Any: deltalake CommitProperties
) -> None:
    """One Delta commit adding ``files``: creates the table (with ``configuration``) if new.

    Raises deltalake's ``CommitFailedError`` when another writer's commit
    conflicts, and its ``DeltaError`` when a table appeared at ``uri`` since
    ``current`` was read as ``None``.
    """
    from deltalake import Schema as DeltaSchema  # noqa: PLC0415  (heavy; on first use)
    from deltalake.transaction import create_table_with_add_actions  # noqa: PLC0415

    if current is None:
        create_table_with_add_actions(
            uri,
            DeltaSchema.from_arrow(schema),
            files,
            mode="error",
            configuration=configuration,
            storage_options=storage_options,
            commit_properties=commit_properties,
        )
        return
    current.create_write_transaction(
        files, mode, current.schema(), commit_properties=commit_properties
    )


@dataclass(frozen=True, slots=True)
class SourceFingerprint:
    """What one source file's bytes were when a version was made from it, and who read them."""

    size: int
    sha256: str
    reader: str = _READER

    @property
    def app_id(self) -> str:
        """The Delta application id naming these bytes (a ``txn`` action of the commit)."""
        return f"mlcycle.source:{self.size}:{self.sha256}:{self.reader}"


def single_file(source: object) -> Path | None:
    """The one existing file ``source`` names (a path, not a glob), else ``None``."""
    if not isinstance(source, str | Path):
        return None
    text = str(Path(source).expanduser())
    if any(char in text for char in "*?["):
        return None
    path = Path(text).resolve()
    return path if path.is_file() else None


def file_state(path: Path) -> tuple[int, int] | None:
    """Size and modification time, to tell whether a file was written between two looks."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_size, found.st_mtime_ns


def file_fingerprint(path: Path) -> SourceFingerprint | None:
    """Size and SHA-256 of the bytes of ``path``, streamed; ``None`` if it was written meanwhile."""
    before = file_state(path)
    if before is None:
        return None
    try:
        with path.open("rb") as file:
            digest = hashlib.file_digest(file, "sha256")
    except OSError:
        return None
    after = file_state(path)
    if after != before:
        return None
    return SourceFingerprint(size=before[0], sha256=digest.hexdigest())
