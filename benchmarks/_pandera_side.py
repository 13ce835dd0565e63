"""The pandera side of the data benchmark, run in ``benchmarks/.work/pandera-venv``.

Usage: ``python _pandera_side.py PARQUET SCHEMA_JSON REPEATS``; prints one JSON object.
``SCHEMA_JSON`` is mlcycle's inferred schema (``Schema.to_dict()``) plus the names of the
categorical columns; this script builds the pandera schema with the same rules: dtype,
nullability, ``ge``/``le`` bounds, ``isin`` domains, the maximum missing fraction (a wide
check that sees the nulls) and key uniqueness. The Parquet file is read with pandas (not
timed) and validated as read (strings as pandas' ``str`` dtype) and with the categorical
columns converted to ``category`` (conversion not timed). Validation is lazy, so every
failure is collected, as mlcycle's ``check`` does.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore")

import pandas as pd  # noqa: E402
import pandera.pandas as pa  # noqa: E402

INTEGER = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
FLOATING = {"halffloat", "float", "double"}


def main(parquet: str, spec_path: str, repeats: int) -> dict[str, Any]:
    """Validate the file ``repeats`` times per layout; return the figures."""
    spec = json.loads(Path(spec_path).read_text())
    started = time.perf_counter()
    frame = pd.read_parquet(parquet)
    read_s = time.perf_counter() - started
    categorical = [c for c in spec["categorical"] if c in frame.columns]
    as_category = frame.astype(dict.fromkeys(categorical, "category"))
    results: dict[str, Any] = {
        "tool": "pandera",
        "versions": {name: metadata.version(name) for name in ("pandera", "pandas", "numpy")},
        "rows": len(frame),
        "read_s": read_s,
    }
    for layout, data in (("string", frame), ("category", as_category)):
        schema = build_schema(spec["schema"], data)
        times, failures = [], None
        for _ in range(repeats):
            start = time.perf_counter()
            try:
                schema.validate(data, lazy=True)
                failures = 0
            except pa.errors.SchemaErrors as exc:
                failures = len(exc.failure_cases)
            times.append(time.perf_counter() - start)
        results[layout] = {
            "median_s": statistics.median(times),
            "best_s": min(times),
            "times_s": times,
            "failures": failures,
            "checks": sum(len(c.checks) for c in schema.columns.values()),
        }
    return results


def build_schema(rules: dict[str, Any], frame: pd.DataFrame) -> pa.DataFrameSchema:
    """The pandera schema with mlcycle's rules, typed as the frame's columns are."""
    key = rules.get("key") or []
    rows = len(frame)
    columns = {}
    for name, rule in rules["columns"].items():
        checks = []
        if rule.get("min") is not None:
            checks.append(pa.Check.ge(rule["min"]))
        if rule.get("max") is not None:
            checks.append(pa.Check.le(rule["max"]))
        if rule.get("domain") is not None:
            checks.append(pa.Check.isin(rule["domain"]))
        if not rule["required"]:
            limit = rule["max_missing_fraction"]
            checks.append(
                pa.Check(
                    lambda s, limit=limit: s.isna().sum() <= limit * rows,
                    ignore_na=False,
                    error=f"missing fraction <= {limit}",
                )
            )
        columns[name] = pa.Column(
            dtype_of(rule["type"], frame[name]),
            checks=checks,
            nullable=not rule["required"],
            unique=key == [name],
        )
    return pa.DataFrameSchema(
        columns,
        unique=key if len(key) > 1 else None,
        strict=False,
    )


def dtype_of(arrow_type: str, column: pd.Series) -> Any:  # Any: a pandera/pandas dtype
    """The dtype pandera must check: the Arrow type's, in the layout the frame has."""
    if arrow_type in INTEGER:
        return arrow_type
    if arrow_type in FLOATING:
        return "float64"
    return column.dtype  # str or category, as read; pandera checks it equals


if __name__ == "__main__":
    figures = main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    sys.stdout.write(json.dumps(figures) + "\n")
