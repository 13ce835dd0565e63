"""Reading what users register into one Arrow table, with errors that name the file and line.

Sources are pandas or polars DataFrames, pyarrow Tables, CSV or Parquet files
(or a glob of them), and SQL queries (``SqlQuery``). Each read also returns a
description of where the rows came from, which becomes the version's
``source`` and the lineage reference it is linked to (``file:/abs/hour.csv``,
``sql:postgresql://host/db``, ``pandas``).
"""

from __future__ import annotations

import contextlib
import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from mlcycle.errors import BackendUnavailable, NotFound, ValidationFailed

__all__ = ["CsvFile", "SqlQuery", "read_source"]

_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".tsv", ".txt")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_OTHER_DELIMITERS = (";", "\t", "|")


@dataclass(frozen=True, slots=True)
class SqlQuery:
    """A SQL query to run on the database at a SQLAlchemy ``url``."""

    query: str
    url: str


@dataclass(frozen=True, slots=True)
class CsvFile:
    """A CSV file (or glob) with a delimiter other than a comma."""

    path: str | Path
    delimiter: str = ","


def read_source(source: object) -> tuple[pa.Table, str]:
    """The rows of ``source`` as an Arrow table, and where they came from."""
    if isinstance(source, pa.Table | pa.RecordBatch):
        return pa.table(source), "arrow"
    if isinstance(source, SqlQuery):
        return _read_sql(source), _sql_description(source.url)
    if isinstance(source, CsvFile):
        paths = _expand(source.path)
        return _concat([_read_csv(p, delimiter=source.delimiter) for p in paths]), _describe(paths)
    if isinstance(source, str | Path):
        paths = _expand(source)
        return _concat([_read_file(p) for p in paths]), _describe(paths)
    module = type(source).__module__.split(".")[0]
    if module == "pandas":
        return _from_pandas(source), "pandas"
    if module == "polars":
        return source.to_arrow(), "polars"  # type: ignore[attr-defined]  # a polars DataFrame
    raise ValidationFailed(
        f"cannot register a {type(source).__name__}; give a pandas or polars DataFrame, a "
        "pyarrow Table, a CSV or Parquet path or glob, or mc.data.sql(query, url)"
    )


def _from_pandas(frame: Any) -> pa.Table:  # Any: a pandas DataFrame
    if any(name is not None for name in frame.index.names):
        frame = frame.reset_index()
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValidationFailed(
            f"the DataFrame cannot be stored as a table: {exc}; give each column one type"
        ) from exc


def _expand(path: str | Path) -> list[Path]:
    text = str(Path(path).expanduser())
    if any(char in text for char in "*?["):
        found = sorted(Path(p).resolve() for p in glob.glob(text, recursive=True))  # noqa: PTH207
        files = [p for p in found if p.is_file()]
        if not files:
            raise NotFound(f"no file matches {text!r}; check the pattern and the folder")
        return files
    resolved = Path(text).resolve()
    if not resolved.is_file():
        what = "is a folder, not a file" if resolved.is_dir() else "does not exist"
        raise NotFound(f"{resolved} {what}; give the path of a CSV or Parquet file or a glob")
    return [resolved]


def _describe(paths: list[Path]) -> str:
    if len(paths) == 1:
        return f"file:{paths[0]}"
    return f"file:{paths[0].parent}/{{{','.join(p.name for p in paths)}}}"[:1000]


def _concat(tables: list[pa.Table]) -> pa.Table:
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValidationFailed(
            f"the files of the glob do not share one schema ({exc}); register them separately"
        ) from exc


def _read_file(path: Path) -> pa.Table:
    name = path.name.lower()
    if name.endswith(_PARQUET_SUFFIXES):
        try:
            # One chunk per row group (read_table cuts batches of 128Ki rows that canonical()
            # would copy back together); binary as large_binary: Delta's string type.
            return pq.ParquetFile(path, binary_type=pa.large_binary()).read()
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValidationFailed(f"{path} is not a readable Parquet file: {exc}") from exc
    if name.endswith(_CSV_SUFFIXES):
        return _read_csv(path, delimiter="\t" if name.endswith(".tsv") else ",")
    raise ValidationFailed(
        f"{path}: unknown file type; use a .csv, .tsv or .parquet file, or read it into a "
        "DataFrame first"
    )


def _read_csv(path: Path, *, delimiter: str) -> pa.Table:
    parse = pa_csv.ParseOptions(delimiter=delimiter)
    try:
        table = pa_csv.read_csv(path, parse_options=parse)
    except pa.ArrowInvalid as exc:
        raise _csv_error(path, delimiter, exc) from exc
    _check_encoding(path, table)
    _check_delimiter(path, table, delimiter)
    return table


def _csv_error(path: Path, delimiter: str, exc: pa.ArrowInvalid) -> ValidationFailed:
    """Read again on one thread to learn the line of the first bad row."""
    bad: list[pa_csv.InvalidRow] = []

    def remember(row: pa_csv.InvalidRow) -> str:
        bad.append(row)
        return "error"

    parse = pa_csv.ParseOptions(delimiter=delimiter, invalid_row_handler=remember)
    with contextlib.suppress(pa.ArrowInvalid):
        pa_csv.read_csv(
            path, read_options=pa_csv.ReadOptions(use_threads=False), parse_options=parse
        )
    if bad and bad[0].number is not None:
        row = bad[0]
        return ValidationFailed(
            f"{path}, line {row.number}: expected {row.expected_columns} fields, found "
            f"{row.actual_columns} ({row.text[:80]!r}); fix the row (a missing or extra "
            "delimiter, or an unquoted one inside a value); nothing was registered"
        )
    message = str(exc).removeprefix("CSV parse error: ")
    return ValidationFailed(f"{path}: cannot read it as CSV: {message}; nothing was registered")


def _check_encoding(path: Path, table: pa.Table) -> None:
    if not any(pa.types.is_binary(field.type) for field in table.schema):
        return
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ValidationFailed(
            f"{path}, line {line}: the bytes are not UTF-8 ({exc.reason} at byte {exc.start}); "
            "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`); nothing was registered"
        ) from exc


def _check_delimiter(path: Path, table: pa.Table, delimiter: str) -> None:
    if table.num_columns != 1:
        return
    header = table.column_names[0]
    for other in _OTHER_DELIMITERS:
        if other != delimiter and other in header:
            shown = "\\t" if other == "\t" else other
            raise ValidationFailed(
                f"{path}, line 1: the header {header[:80]!r} has no {delimiter!r} but has "
                f"{shown!r}; the file looks {shown!r}-delimited, so register "
                f"mc.data.csv({str(path)!r}, delimiter={other!r}); nothing was registered"
            )


def _sql_description(url: str) -> str:
    from sqlalchemy.engine import make_url  # noqa: PLC0415  (only SQL sources need it)

    return "sql:" + make_url(url).render_as_string(hide_password=True)


def _read_sql(source: SqlQuery) -> pa.Table:
    import pandas as pd  # noqa: PLC0415  (only SQL sources need it)
    from sqlalchemy import create_engine, text  # noqa: PLC0415
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError  # noqa: PLC0415

    shown = _sql_description(source.url).removeprefix("sql:")
    try:
        engine = create_engine(source.url)
    except (ArgumentError, NoSuchModuleError, ModuleNotFoundError) as exc:
        raise ValidationFailed(f"cannot use the database URL {shown}: {exc}") from exc
    try:
        with engine.connect() as conn:
            result = conn.execute(text(source.query))
            frame = pd.DataFrame.from_records(result.fetchall(), columns=list(result.keys()))
    except DBAPIError as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if exc.connection_invalidated or "connect" in detail.lower():
            raise BackendUnavailable(f"cannot reach {shown}: {detail}") from exc
        raise ValidationFailed(
            f"the query failed on {shown}: {detail}; fix the SQL ({source.query[:80]!r}); "
            "nothing was registered"
        ) from exc
    finally:
        engine.dispose()
    return _from_pandas(frame)
