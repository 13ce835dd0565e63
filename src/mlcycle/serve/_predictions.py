"""Reading the prediction log: its rows over a time range, the request ids it holds, its kinds.

Rows still in spool segments (of live or dead processes) are read with the
Delta table's, unless their segment already rolled into it (its Delta app
transaction names the segment). ``read_predictions`` leaves out the rows of
failed requests unless asked for ``errors=True`` (monitoring's error rate),
so every other reader sees the columns it always saw.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.errors import ValidationFailed
from mlcycle.serve._deployments import LogSchema
from mlcycle.serve._records import PARTITION, empty_table, first_known, schema_words
from mlcycle.serve._segments import SUFFIX, read_segment, segment_schema
from mlcycle.store import check_deployment_name

if TYPE_CHECKING:
    from mlcycle.store import TableArea

__all__ = [
    "aware_utc",
    "log_table_name",
    "logged_request_ids",
    "read_log_schema",
    "read_predictions",
    "spool_schemas",
    "table_schema",
]


def log_table_name(deployment: str) -> str:
    """The table-area name of a deployment's prediction log."""
    return f"predictions/{check_deployment_name(deployment)}"


def read_log_schema(deployment: str, *, spool_dir: Path, tables: TableArea) -> LogSchema:
    """What ``deployment``'s prediction log holds a row: its output's kind and each feature's.

    Read from its Delta table, else from the segments in the spool (any
    process's); each is unknown while no answered prediction of it is logged.
    """
    return first_known([table_schema(deployment, tables), *spool_schemas(spool_dir, deployment)])


def table_schema(deployment: str, tables: TableArea) -> LogSchema:
    from deltalake import DeltaTable  # noqa: PLC0415  (heavy; on first use)
    from deltalake.exceptions import TableNotFoundError  # noqa: PLC0415

    uri = tables.table_uri(log_table_name(deployment))
    try:
        delta = DeltaTable(uri, storage_options=tables.storage_options() or None)
    except TableNotFoundError:
        return LogSchema()
    return schema_words(pa.schema(delta.schema().to_arrow()))


def spool_schemas(spool_dir: Path, deployment: str) -> list[LogSchema]:
    schemas = [segment_schema(path) for path in _segment_paths(spool_dir, deployment)]
    return [schema_words(schema) for schema in schemas if schema is not None]


def read_predictions(
    *,
    spool_dir: Path,
    tables: TableArea,
    deployment: str,
    since: datetime | None = None,
    until: datetime | None = None,
    variant: str | None = None,
    errors: bool = False,
    ordered: bool = True,
) -> pa.Table:
    """Every logged prediction of ``deployment`` in ``[since, until)``, oldest first.

    Rows still in spool segments (of live or dead processes) are included,
    unless their segment already rolled into the table. ``errors=True`` keeps
    the rows of failed requests (and the ``error`` column, null for answers).
    ``ordered=False`` skips the sort (a reader that only needs time order
    of a table it will sort by time itself saves a pass over every column).
    """
    from deltalake import DeltaTable  # noqa: PLC0415  (heavy; on first use)
    from deltalake.exceptions import TableNotFoundError  # noqa: PLC0415

    pending = {}
    for path in _segment_paths(spool_dir, deployment):
        found = read_segment(path)
        if found is not None:
            pending[path.stem] = found
    uri = tables.table_uri(log_table_name(deployment))
    parts: list[pa.Table] = []
    try:
        delta = DeltaTable(uri, storage_options=tables.storage_options() or None)
    except TableNotFoundError:
        delta = None
    condition = _condition(since, until, variant)
    if delta is not None:
        dataset = delta.to_pyarrow_dataset()
        parts.append(dataset.to_table(filter=condition))
        pending = {k: v for k, v in pending.items() if not delta.transaction_version(k)}
    parts.extend(
        table.filter(condition) if condition is not None else table for table in pending.values()
    )
    if not parts:
        return empty_table()
    combined = pa.concat_tables(parts, promote_options="permissive")
    if not errors and "error" in combined.column_names:
        combined = combined.filter(pc.is_null(combined.column("error"))).drop_columns(["error"])
        if "inputs" not in combined.column_names:  # only failures were logged
            return empty_table()
    if not ordered:
        return combined
    return combined.sort_by(
        [("time", "ascending"), ("request_id", "ascending"), ("row_index", "ascending")]
    )


def logged_request_ids(
    *, spool_dir: Path, tables: TableArea, deployment: str, ids: pa.Array
) -> set[str]:
    """Which of ``ids`` the log holds an answered prediction for (failed requests do not count).

    Reads only the ``request_id`` and ``error`` columns, with the ids pushed
    into the Delta scan as a filter (files and row groups whose statistics
    rule them out are skipped), and the spool segments not yet rolled into it.
    """
    from deltalake import DeltaTable  # noqa: PLC0415  (heavy; on first use)
    from deltalake.exceptions import TableNotFoundError  # noqa: PLC0415

    wanted = pc.field("request_id").isin(ids)
    parts: list[pa.Table] = []
    # The segments before the table: one rolled over in between is then in the table read
    # after (and skipped here), never in neither.
    pending: dict[str, pa.Table] = {}
    for path in _segment_paths(spool_dir, deployment):
        found = read_segment(path)
        if found is not None:
            pending[path.stem] = found.select(_id_columns(found.schema)).filter(wanted)
    try:
        delta = DeltaTable(
            tables.table_uri(log_table_name(deployment)),
            storage_options=tables.storage_options() or None,
        )
    except TableNotFoundError:
        delta = None
    if delta is not None:
        dataset = delta.to_pyarrow_dataset()
        parts.append(dataset.to_table(columns=_id_columns(dataset.schema), filter=wanted))
        pending = {k: v for k, v in pending.items() if not delta.transaction_version(k)}
    parts.extend(pending.values())
    known: set[str] = set()
    for part in parts:
        answered = (
            part.filter(pc.is_null(part.column("error"))) if "error" in part.column_names else part
        )
        known.update(answered.column("request_id").to_pylist())
    return known


def _id_columns(schema: pa.Schema) -> list[str]:
    return ["request_id", *(["error"] if "error" in schema.names else [])]


def _segment_paths(spool_dir: Path, deployment: str) -> list[Path]:
    return sorted((spool_dir / check_deployment_name(deployment)).glob(f"*{SUFFIX}"))


def _condition(
    since: datetime | None, until: datetime | None, variant: str | None
) -> pc.Expression | None:
    terms = []
    if since is not None:
        start = aware_utc(since)
        terms += [pc.field(PARTITION) >= start.date(), pc.field("time") >= start]
    if until is not None:
        end = aware_utc(until)
        terms += [pc.field(PARTITION) <= end.date(), pc.field("time") < end]
    if variant is not None:
        terms.append(pc.field("variant") == variant)
    if not terms:
        return None
    condition = terms[0]
    for term in terms[1:]:
        condition = condition & term
    return condition


def aware_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; ``ValidationFailed`` when it has no time zone."""
    if moment.tzinfo is None:
        raise ValidationFailed(
            f"{moment.isoformat()} has no time zone; give an aware datetime such as "
            "datetime(2030, 1, 1, tzinfo=UTC)"
        )
    return moment.astimezone(UTC)
