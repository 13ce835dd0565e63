"""Checking a table against a schema: one vectorised pass per column.

Each rule is first tested with a cheap aggregate (null count from Arrow's
metadata, min/max, one hash pass for categories); only a column that breaks a
rule pays for a mask, and its examples come from filtering that mask and
taking the first few values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from mlcycle.data import DatasetRegistry
from mlcycle.validate._refs import table_of
from mlcycle.validate._report import Anomaly, ValidationReport
from mlcycle.validate._schema import ColumnSchema, Schema, ensure_schema, type_family
from mlcycle.validate._tables import TableLike, to_arrow

__all__ = ["check"]

EXAMPLES = 5
_THREADS = 2
_PARALLEL_CELLS = 1_000_000


def check(
    data: TableLike | str,
    schema: Schema | Path | str,
    *,
    registry: DatasetRegistry | None = None,
) -> ValidationReport:
    """Every way ``data`` breaks ``schema`` (a Schema or a YAML file), as a report of anomalies.

    ``data`` is a pyarrow Table, a pandas or polars DataFrame, or a dataset
    reference such as ``"bike/3"`` (``registry`` defaults to the working
    directory's workspace).

    >>> import pyarrow as pa
    >>> from mlcycle.validate import infer_schema
    >>> schema = infer_schema(pa.table({"x": [1.0, 2.0]}), slack=0.0)
    >>> report = check(pa.table({"x": [1.5, 9.0]}), schema)
    >>> report.ok, [(a.kind, a.column, a.count, a.examples) for a in report.anomalies]
    (False, [('out_of_range', 'x', 1, [9.0])])
    """
    rules = ensure_schema(schema)
    if isinstance(data, str):
        table, version = table_of(data, registry=registry)
        return replace(_check_table(table, rules), dataset=version.ref)
    return _check_table(to_arrow(data), rules)


def _check_table(table: pa.Table, rules: Schema) -> ValidationReport:
    anomalies: list[Anomaly] = []
    if table.num_rows < max(rules.min_rows, 1):
        anomalies.append(
            Anomaly(
                kind="empty_data",
                severity="error",
                column=None,
                count=table.num_rows,
                message=f"the data has {table.num_rows} rows; the schema asks for at least "
                f"{max(rules.min_rows, 1)}",
            )
        )
    present = set(table.schema.names)
    anomalies.extend(
        Anomaly(
            kind="missing_column",
            severity="error",
            column=rule.name,
            count=table.num_rows,
            message=f"column {rule.name!r} ({rule.type}) is missing",
        )
        for rule in rules.columns
        if rule.name not in present
    )
    tasks: list[Callable[[], list[Anomaly]]] = [
        partial(_check_column, table.column(rule.name), rule, table.num_rows)
        for rule in rules.columns
        if rule.name in present
    ]
    if rules.key and all(k in present for k in rules.key) and table.num_rows:
        tasks.append(partial(_check_key, table, rules.key))
    for found in _run(tasks, cells=table.num_rows * len(tasks)):
        anomalies.extend(found)
    expected = set(rules.names)
    anomalies.extend(
        Anomaly(
            kind="unexpected_column",
            severity="warning",
            column=name,
            count=table.num_rows,
            message=f"column {name!r} ({table.schema.field(name).type}) is not in the schema",
        )
        for name in table.schema.names
        if name not in expected
    )
    return ValidationReport(
        anomalies=anomalies, rows=table.num_rows, columns=table.num_columns, dataset=rules.dataset
    )


def _run(tasks: list[Callable[[], list[Anomaly]]], *, cells: int) -> list[list[Anomaly]]:
    """Run the per-column checks, on two threads when the table is big enough to gain."""
    if cells < _PARALLEL_CELLS or len(tasks) < 2:
        return [task() for task in tasks]
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        return list(pool.map(lambda task: task(), tasks))


def _check_column(column: pa.ChunkedArray, rule: ColumnSchema, rows: int) -> list[Anomaly]:
    family = type_family(str(column.type)) or str(column.type)
    if not _compatible(family, rule.family):
        return [
            Anomaly(
                kind="type_mismatch",
                severity="error",
                column=rule.name,
                count=rows,
                message=f"column {rule.name!r} is {column.type}; the schema expects {rule.type}",
            )
        ]
    anomalies = _check_missing(column, rule, rows)
    if family == "null" or column.null_count == rows:
        return anomalies
    if family in {"integer", "floating", "decimal"}:
        anomalies.extend(_check_numeric(column, rule, family))
    elif rule.domain is not None and family == "string":
        anomalies.extend(_check_domain(column, rule))
    return anomalies


def _compatible(data_family: str, rule_family: str) -> bool:
    if data_family in {rule_family, "null"}:
        return True
    return rule_family in {"floating", "decimal"} and data_family in {"integer", "decimal"}


def _check_missing(column: pa.ChunkedArray, rule: ColumnSchema, rows: int) -> list[Anomaly]:
    nulls = column.null_count
    limit = 0.0 if rule.required else rule.max_missing_fraction
    if not nulls or not rows or nulls / rows <= limit:
        return []
    positions = pc.indices_nonzero(pc.is_null(column)).slice(0, EXAMPLES).to_pylist()
    allowed = "none (required)" if rule.required else f"at most {limit:.2%}"
    return [
        Anomaly(
            kind="missing_fraction",
            severity="error",
            column=rule.name,
            count=nulls,
            rows=positions,
            message=f"column {rule.name!r} is missing in {nulls:,} of {rows:,} rows "
            f"({nulls / rows:.2%}); allowed: {allowed}",
        )
    ]


def _numeric_values(column: pa.ChunkedArray, family: str, rule: ColumnSchema) -> npt.NDArray[Any]:
    if family == "decimal":
        column = column.cast(pa.float64())
    if column.null_count:  # positions stay aligned; nulls were counted already
        column = _fill_inside(column, rule)
    values: npt.NDArray[Any] = column.to_numpy()
    return values


def _fill_inside(column: pa.ChunkedArray, rule: ColumnSchema) -> pa.ChunkedArray:
    """Nulls filled with a value inside the bounds, so min/max still decide the column at once."""
    filler: float = 0
    if rule.min is not None and math.isfinite(rule.min):
        filler = rule.min
        if pa.types.is_integer(column.type):
            filler = math.ceil(rule.min)
    elif rule.max is not None and math.isfinite(rule.max):
        filler = rule.max
        if pa.types.is_integer(column.type):
            filler = math.floor(rule.max)
    try:
        return column.fill_null(pa.scalar(filler).cast(column.type))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):  # out of the type
        return column.fill_null(0)


def _check_numeric(column: pa.ChunkedArray, rule: ColumnSchema, family: str) -> list[Anomaly]:
    values = _numeric_values(column, family, rule)
    if _within(values, rule):  # nulls hold a value inside the bounds (or 0 without bounds)
        return []
    valid = None if not column.null_count else ~pc.is_null(column).to_numpy(zero_copy_only=False)
    anomalies: list[Anomaly] = []
    finite = None
    if values.dtype.kind == "f":
        finite_mask = np.isfinite(values)
        if not finite_mask.all():
            finite = finite_mask
            anomalies.extend(_check_nan_inf(values, finite_mask, valid, rule))
    if rule.min is None and rule.max is None:
        return anomalies
    candidates = values if finite is None else values[finite]
    if valid is not None:
        mask_valid = valid if finite is None else valid[finite]
        candidates = candidates[mask_valid]
    if candidates.size == 0:
        return anomalies
    low, high = candidates.min(), candidates.max()
    if (rule.min is None or low >= rule.min) and (rule.max is None or high <= rule.max):
        return anomalies
    outside = np.zeros(values.shape, dtype=bool)
    if rule.min is not None:
        outside |= values < rule.min
    if rule.max is not None:
        outside |= values > rule.max
    if valid is not None:
        outside &= valid
    if finite is not None:  # NaN and infinities have their own anomaly
        outside &= finite
    anomalies.append(_out_of_range(values, outside, rule))
    return anomalies


def _within(values: npt.NDArray[Any], rule: ColumnSchema) -> bool:
    """Two SIMD reductions decide most columns: min and max propagate NaN and show infinities."""
    low, high = values.min(), values.max()
    if values.dtype.kind == "f" and not (np.isfinite(low) and np.isfinite(high)):
        return False
    return (rule.min is None or low >= rule.min) and (rule.max is None or high <= rule.max)


def _out_of_range(
    values: npt.NDArray[Any], outside: npt.NDArray[np.bool_], rule: ColumnSchema
) -> Anomaly:
    positions = np.flatnonzero(outside)
    bounds = f"[{_bound(rule.min)}, {_bound(rule.max)}]"
    return Anomaly(
        kind="out_of_range",
        severity="error",
        column=rule.name,
        count=int(positions.size),
        examples=values[positions[:EXAMPLES]].tolist(),
        rows=positions[:EXAMPLES].tolist(),
        message=f"column {rule.name!r} has {positions.size:,} values outside {bounds}",
    )


def _bound(value: float | None) -> str:
    return "-inf" if value is None else f"{value:g}"


def _check_nan_inf(
    values: npt.NDArray[Any],
    finite_mask: npt.NDArray[np.bool_],
    valid: npt.NDArray[np.bool_] | None,
    rule: ColumnSchema,
) -> list[Anomaly]:
    bad = ~finite_mask
    if valid is not None:
        bad &= valid
    if rule.allow_nan:
        bad &= ~np.isnan(values)
    if rule.allow_inf:
        bad &= ~np.isinf(values)
    positions = np.flatnonzero(bad)
    if positions.size == 0:
        return []
    allowed = [w for w, ok in (("NaN", rule.allow_nan), ("infinity", rule.allow_inf)) if not ok]
    return [
        Anomaly(
            kind="nan_or_inf",
            severity="error",
            column=rule.name,
            count=int(positions.size),
            examples=[str(v) for v in values[positions[:EXAMPLES]].tolist()],
            rows=positions[:EXAMPLES].tolist(),
            message=f"column {rule.name!r} has {positions.size:,} values that are "
            f"{' or '.join(allowed)}, which the schema does not allow",
        )
    ]


def _check_domain(column: pa.ChunkedArray, rule: ColumnSchema) -> list[Anomaly]:
    if pa.types.is_dictionary(column.type):
        unseen = _unseen_in_dictionaries(column, rule.domain or [])
    else:
        inside = pc.is_in(column, value_set=pa.array(rule.domain or [], type=column.type))
        if (pc.sum(inside).as_py() or 0) == len(column) - column.null_count:
            return []
        outside = pc.and_kleene(pc.invert(inside), pc.is_valid(column))
        counted = pc.value_counts(pc.filter(column, outside))
        unseen = dict(
            zip(
                counted.field("values").to_pylist(),
                counted.field("counts").to_pylist(),
                strict=True,
            )
        )
    if not unseen:
        return []
    total = sum(unseen.values())
    examples = sorted(unseen, key=lambda v: (-unseen[v], v))[:EXAMPLES]
    return [
        Anomaly(
            kind="unseen_category",
            severity="error",
            column=rule.name,
            count=total,
            examples=list(examples),
            message=f"column {rule.name!r} has {total:,} values in {len(unseen):,} categories "
            "outside its domain",
        )
    ]


def _unseen_in_dictionaries(column: pa.ChunkedArray, domain: list[str]) -> dict[str, int]:
    """Test each chunk's dictionary, then count only the rows that use an unseen entry."""
    unseen: dict[str, int] = {}
    for chunk in column.chunks:
        entries = chunk.dictionary
        outside = np.flatnonzero(
            ~pc.is_in(entries, value_set=pa.array(domain, type=entries.type)).to_numpy(
                zero_copy_only=False
            )
        )
        if outside.size == 0:
            continue
        indices = pc.drop_null(chunk.indices).to_numpy()
        counts = np.bincount(indices, minlength=len(entries))[outside]
        for entry, count in zip(entries.take(outside).to_pylist(), counts.tolist(), strict=True):
            if count:
                unseen[entry] = unseen.get(entry, 0) + count
    return unseen


def _check_key(table: pa.Table, key: list[str]) -> list[Anomaly]:
    if len(key) == 1 and _unique(table.column(key[0])):
        return []
    grouped = table.select(key).group_by(key, use_threads=True).aggregate([([], "count_all")])
    dupes = grouped.filter(pc.greater(grouped.column("count_all"), 1))
    if dupes.num_rows == 0:
        return []
    extra = int(pc.sum(dupes.column("count_all")).as_py()) - dupes.num_rows
    examples = [
        row[key[0]] if len(key) == 1 else tuple(row[k] for k in key)
        for row in dupes.slice(0, EXAMPLES).to_pylist()
    ]
    return [
        Anomaly(
            kind="duplicate_key",
            severity="error",
            column=", ".join(key),
            count=extra,
            examples=[_plain(e) for e in examples],
            message=f"key ({', '.join(key)}) repeats: {dupes.num_rows:,} values occur more than "
            f"once ({extra:,} extra rows)",
        )
    ]


def _unique(column: pa.ChunkedArray) -> bool:
    """Whether one key column has no repeats (nulls count as one value, as in a group-by)."""
    type_ = column.type
    if column.null_count == 0 and (
        pa.types.is_integer(type_) or pa.types.is_timestamp(type_) or pa.types.is_date(type_)
    ):
        values = column.to_numpy()
        if values.size < 2 or bool((values[1:] > values[:-1]).all()):  # already increasing
            return True
        ordered = np.sort(values)
        return not bool((ordered[1:] == ordered[:-1]).any())
    distinct: int = pc.count_distinct(column, mode="all").as_py()
    return distinct == len(column)


def _plain(value: Any) -> Any:  # Any: one key value of whatever type the column holds
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
