"""The prediction log's rows as Arrow: what a served batch or a shadow's copies become.

Columns: ``request_id, row_index, time, date, deployment, model,
model_version, variant, shadow, latency_ms, inputs`` (a struct with one field
per feature) and ``output``. Numbers are stored as float64 (integers
included), so batches of one model always share a schema.

Failed requests are rows too, with an ``error`` column (``"422: ..."``) and
neither ``inputs`` nor ``output``: Delta's schema merge adds the column to an
older table, where earlier rows read it as null, and their missing columns
read as null.

What kind of output and features rows of a schema hold is told in
``LogSchema``'s words (``schema_words``): a server checks a model against
them before it serves it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from mlcycle.serve._deployments import SEVERAL_VALUES, LogSchema, one_a_row
from mlcycle.serve._rows import MatrixColumns
from mlcycle.serve._sink import PredictionBatch

__all__ = [
    "PARTITION",
    "batch_schema",
    "column_kind",
    "copies_record",
    "empty_table",
    "first_known",
    "schema_words",
    "to_record_batch",
]

PARTITION = "date"
"""The column the log's Delta table is partitioned by."""


def _column(chunks: Sequence[Any]) -> pa.Array:  # Any: each chunk a sequence or NumPy array
    """One column from the values of several batches, numbers as float64."""
    if all(isinstance(chunk, np.ndarray) for chunk in chunks):
        values: Any = np.concatenate(chunks)  # Any: a NumPy array
        if values.ndim > 1:  # a multi-output model: one list per row
            values = list(values)
    else:
        values = []
        for chunk in chunks:
            values.extend(chunk.tolist() if isinstance(chunk, np.ndarray) else chunk)
    try:
        array = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = pa.array([None if v is None else str(v) for v in values], pa.string())
    kind = array.type
    if pa.types.is_null(kind) and all(
        isinstance(chunk, np.ndarray) and chunk.dtype == object for chunk in chunks
    ):  # a string (or category) feature missing in every row of these batches
        return array.cast(pa.string())
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind):
        return array.cast(pa.float64())
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        value = kind.value_type
        if pa.types.is_integer(value) or pa.types.is_floating(value):
            return array.cast(pa.list_(pa.float64()))
    return array


def first_known(schemas: Iterable[LogSchema]) -> LogSchema:
    """One ``LogSchema``: each kind as the first of ``schemas`` that knows it says."""
    output: str | None = None
    features: dict[str, str] = {}
    for schema in schemas:
        output = output or schema.output
        features = {**schema.features, **features}
    return LogSchema(output=output, features=features)


def schema_words(schema: pa.Schema) -> LogSchema:
    """What a segment or table of Arrow ``schema`` holds, in ``LogSchema``'s words."""
    output = column_kind(schema.field("output").type) if "output" in schema.names else None
    inputs = schema.field("inputs").type if "inputs" in schema.names else pa.struct([])
    features = {f.name: _feature_kind(f.type) for f in inputs} if pa.types.is_struct(inputs) else {}
    return LogSchema(
        output=output, features={name: kind for name, kind in features.items() if kind}
    )


def batch_schema(batch: PredictionBatch) -> LogSchema:
    """What ``batch``'s rows will hold in the log, as ``to_record_batch`` converts them.

    A feature missing in every row tells nothing: its column is a string
    column for any values that came as objects (a nullable boolean's too).
    """
    columns = {name: _column([batch.inputs[name]]) for name in batch.inputs}
    features = {
        name: _feature_kind(column.type)
        for name, column in columns.items()
        if column.null_count < len(column)
    }
    return LogSchema(
        output=column_kind(_column([batch.outputs]).type),
        features={name: kind for name, kind in features.items() if kind},
    )


def column_kind(kind: pa.DataType) -> str | None:
    """What an ``output`` column of Arrow type ``kind`` holds a row, in ``output_kind``'s words.

    The types are those ``_column`` writes; ``None`` for another.
    """
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return SEVERAL_VALUES
    word = _value_word(kind)
    return one_a_row(word) if word else None


def _feature_kind(kind: pa.DataType) -> str | None:
    """What a feature's field of Arrow type ``kind`` holds, in ``LogSchema``'s words.

    The types are those ``_column`` writes, date-times as timestamps; ``None`` for another.
    """
    if pa.types.is_timestamp(kind):
        return "date-time"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return "list"
    return _value_word(kind)


def _value_word(kind: pa.DataType) -> str | None:
    if pa.types.is_floating(kind) or pa.types.is_integer(kind):
        return "number"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    return None


def _feature_columns(batches: Sequence[PredictionBatch], features: list[str]) -> list[pa.Array]:
    """The feature columns of ``batches``: from their matrices in one call when all have one."""
    matrices = [b.inputs.matrix for b in batches if isinstance(b.inputs, MatrixColumns)]
    if len(matrices) < len(batches):
        return [_column([batch.inputs[name] for batch in batches]) for name in features]
    matrix = matrices[0] if len(matrices) == 1 else np.concatenate(matrices)
    return [pa.array(matrix[:, i], pa.float64(), from_pandas=True) for i in range(len(features))]


def _repeated(
    batches: Sequence[PredictionBatch], field: str, rows: pa.Array, kind: pa.DataType
) -> pa.Array:
    """A batch-level field once per row, as an Arrow array of type ``kind``.

    ``rows`` holds, for each row, the index of its batch: the field is converted
    once per batch and spread over the rows by Arrow, not by a list per row.
    """
    return pa.array([getattr(batch, field) for batch in batches], kind).take(rows)


def _joined(batches: Sequence[PredictionBatch], field: str) -> list[Any]:  # Any: a field
    values: list[Any] = []
    for batch in batches:
        chunk = getattr(batch, field)
        values.extend(chunk.tolist() if isinstance(chunk, np.ndarray) else chunk)
    return values


def to_record_batch(batches: Sequence[PredictionBatch]) -> pa.RecordBatch:
    """Batches of one deployment with the same features as one record batch of the log's columns.

    Converting many at once costs a few Arrow calls per column, not per batch.
    Batches of failed requests (``error`` set) give the columns of failures.
    """
    counts = [len(batch.request_ids) for batch in batches]
    rows = pa.array(np.repeat(np.arange(len(batches), dtype=np.int32), counts))
    micros = np.rint(np.asarray(_joined(batches, "times"), dtype=np.float64) * 1e6)
    times = pa.array(micros.astype(np.int64), pa.timestamp("us", tz="UTC"))
    common = {
        "request_id": pa.array(_joined(batches, "request_ids"), pa.string()),
        "row_index": pa.array(_joined(batches, "row_indexes"), pa.int32()),
        "time": times,
        PARTITION: times.cast(pa.date32()),
        "deployment": _repeated(batches, "deployment", rows, pa.string()),
        "model": _repeated(batches, "model", rows, pa.string()),
        "model_version": _repeated(batches, "model_version", rows, pa.int32()),
        "variant": _repeated(batches, "variant", rows, pa.string()),
        "shadow": _repeated(batches, "shadow", rows, pa.bool_()),
        "latency_ms": pa.array(_joined(batches, "latency_ms"), pa.float64()),
    }
    if batches and batches[0].error is not None:
        common["error"] = _repeated(batches, "error", rows, pa.string())
        return pa.RecordBatch.from_pydict(common)
    features = list(batches[0].inputs) if batches else []
    inputs = (
        pa.StructArray.from_arrays(_feature_columns(batches, features), names=features)
        if features
        else pa.array([{}] * len(times), pa.struct([]))
    )
    return pa.RecordBatch.from_pydict(
        {**common, "inputs": inputs, "output": _column([b.outputs for b in batches])}
    )


def copies_record(
    copies: pa.RecordBatch,
    *,
    deployment: str,
    model: str,
    model_version: int,
    variant: str,
    features: Sequence[str],
    latency_ms: np.ndarray,
    outputs: np.ndarray,
) -> pa.RecordBatch:
    """The log's rows of ``copies`` a shadow variant predicted, as ``to_record_batch`` has them.

    ``copies`` holds the ``request_id``, ``row_index``, ``time`` and
    ``inputs`` columns of answered rows, as the log wrote them (a shadow's
    tee sends them on). They are kept as they are, ``inputs`` narrowed to the
    shadow's ``features``: no value becomes a Python object on the way.
    """
    count = copies.num_rows
    times = copies.column("time")
    logged = copies.column("inputs")
    assert isinstance(logged, pa.StructArray), "the log's inputs are a struct"
    inputs = (
        pa.StructArray.from_arrays([logged.field(name) for name in features], names=features)
        if features
        else pa.array([{}] * count, pa.struct([]))
    )
    return pa.RecordBatch.from_pydict(
        {
            "request_id": copies.column("request_id"),
            "row_index": copies.column("row_index"),
            "time": times,
            PARTITION: times.cast(pa.date32()),
            "deployment": pa.repeat(pa.scalar(deployment, pa.string()), count),
            "model": pa.repeat(pa.scalar(model, pa.string()), count),
            "model_version": pa.repeat(pa.scalar(model_version, pa.int32()), count),
            "variant": pa.repeat(pa.scalar(variant, pa.string()), count),
            "shadow": pa.repeat(pa.scalar(value=True, type=pa.bool_()), count),
            "latency_ms": pa.array(latency_ms, pa.float64()),
            "inputs": inputs,
            "output": _column([outputs]),
        }
    )


def empty_table() -> pa.Table:
    """A table of the answered rows' columns with no rows (a read that found none)."""
    batch = to_record_batch(
        [
            PredictionBatch(
                deployment="none",
                model="none",
                model_version=0,
                variant="none",
                shadow=False,
                request_ids=[],
                row_indexes=[],
                times=[],
                latency_ms=[],
                inputs={},
                outputs=[],
            )
        ]
    )
    return pa.Table.from_batches([batch])
