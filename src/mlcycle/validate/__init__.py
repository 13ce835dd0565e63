"""Validation: schemas inferred from profiles, kept as YAML, and checks that report anomalies.

``mc.validate.infer_schema("bike/3")`` writes ``schemas/bike.yaml`` in the
project (never over a file with other content unless ``overwrite=True``);
``mc.validate.check("bike/3")`` checks a version against that file.

>>> import pyarrow as pa
>>> from mlcycle import validate
>>> schema = validate.infer_schema(pa.table({"hr": [0, 12, 23], "season": ["a", "b", "a"]}))
>>> validate.check(pa.table({"hr": [5], "season": ["z"]}), schema).errors[0].kind
'unseen_category'
"""

from __future__ import annotations

from mlcycle.validate._report import Anomaly, AnomalyKind, Severity, ValidationReport
from mlcycle.validate._schema import ColumnSchema, Schema, load_schema, parse_schema
from mlcycle.validate._sdk import check, infer_schema, schema_path

__all__ = [
    "Anomaly",
    "AnomalyKind",
    "ColumnSchema",
    "Schema",
    "Severity",
    "ValidationReport",
    "check",
    "infer_schema",
    "load_schema",
    "parse_schema",
    "schema_path",
]
