"""Batch scoring: a whole dataset version or file through a model, in batches, to Parquet.

The rows go through the same ``ServedModel`` the server uses, so a version
with an ONNX copy is scored by ONNX Runtime straight from a float64 matrix,
and every batch is checked against the model's signature as a request would
be. Files are streamed (Parquet row groups, CSV blocks), and so is a dataset
version (``DatasetRegistry.scan``: its Parquet files in row order). The scores go to a
temporary file beside ``out``. Once every row is scored, that file is put in
the artifact store and lineage edges record which model version and which
data made it (``scores:<digest>`` has the model version, kind ``model``, and
the data, kind ``input``, as parents); only then does it replace ``out``, so
a failure never leaves a partial or unrecorded file, nor loses the one
``out`` held.

Scores hold ``row`` (the row's position in the input), the ``keep``
columns copied from the input, and ``prediction``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from mlcycle.errors import NotFound, ValidationFailed
from mlcycle.ids import Digest, new_id
from mlcycle.serve._model import ServedModel, load_model

if TYPE_CHECKING:
    from mlcycle.clock import Clock
    from mlcycle.data import DatasetRegistry
    from mlcycle.registry import ModelRegistry
    from mlcycle.store import ArtifactStore, LineageGraph

__all__ = ["FILE_SUFFIXES", "Scores", "batch_score"]

FILE_SUFFIXES = (".csv", ".parquet", ".pq")
"""``data`` ending in one of these is a file; anything else names a dataset version."""


@dataclass(frozen=True, slots=True)
class Scores:
    """What ``score`` wrote: where, how many rows, from which model and data, and how fast."""

    out: Path
    rows: int
    model: str
    data: str
    digest: Digest
    runtime: str
    seconds: float

    @property
    def ref(self) -> str:
        """The scores' lineage reference: ``scores:<digest>``."""
        return f"scores:{self.digest}"

    @property
    def rows_per_second(self) -> float:
        """Rows scored per second, reading and writing included."""
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True, slots=True)
class _Source:
    ref: str
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]


def batch_score(
    model: str,
    data: str | Path,
    out: Path,
    *,
    registry: ModelRegistry,
    datasets: DatasetRegistry,
    artifacts: ArtifactStore,
    lineage: LineageGraph,
    clock: Clock,
    actor: str,
    keep: Sequence[str] = (),
    batch_rows: int = 65_536,
) -> Scores:
    """Score every row of ``data`` (a dataset version or a .csv/.parquet file) into ``out``.

    Raises ``NotFound`` for an unknown model, dataset or file, and
    ``ValidationFailed`` when the data lacks a model input or holds a value
    the signature refuses, or ``out`` cannot be written; then, as when the
    artifact store or the lineage fails, ``out`` is left as it was.
    """
    if batch_rows < 1:
        raise ValidationFailed(f"batch_rows={batch_rows} must be at least 1")
    started = time.perf_counter()
    served = load_model(registry, model, max_rows=batch_rows)
    model_ref = f"models:/{served.ref}"
    temporary = _temporary_beside(out)
    try:
        source = _open(data, datasets, batch_rows=batch_rows)
        _check_columns(served, source, keep)
        rows = _write(served, source, keep, temporary, batch_rows=batch_rows)
        with temporary.open("rb") as stream:
            digest = artifacts.put(stream)
        target = f"scores:{digest}"
        now = clock.now()
        lineage.add_edge(model_ref, target, kind="model", actor=actor, time=now)
        lineage.add_edge(source.ref, target, kind="input", actor=actor, time=now)
        temporary.replace(out)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return Scores(
        out=out,
        rows=rows,
        model=model_ref,
        data=source.ref,
        digest=digest,
        runtime=served.runtime,
        seconds=time.perf_counter() - started,
    )


def _temporary_beside(out: Path) -> Path:
    """An empty file next to ``out``, so the final rename cannot cross file systems."""
    if out.is_dir():
        raise ValidationFailed(f"--out {out} is a folder; give a file name such as scores.parquet")
    folder = out.parent
    if not folder.is_dir():
        raise ValidationFailed(f"cannot write {out}: the folder {folder} does not exist")
    temporary = folder / f".{out.name}.{new_id()}.tmp"
    try:
        temporary.open("xb").close()
    except OSError as exc:
        raise ValidationFailed(
            f"cannot write {out}: {exc.strerror or exc}; choose a writable place for --out"
        ) from None
    return temporary


def _open(data: str | Path, datasets: DatasetRegistry, *, batch_rows: int) -> _Source:
    text = str(data)
    if not text.lower().endswith(FILE_SUFFIXES):
        version, schema, batches = datasets.scan(text, batch_rows=batch_rows)
        return _Source(version.ref, schema, batches)
    path = Path(text).resolve()
    if not path.is_file():
        raise NotFound(f"no file {path}; give a .csv or .parquet file, or a dataset such as bike/5")
    ref = f"file:{path}"
    if path.suffix.lower() == ".csv":
        return _csv(path, ref, batch_rows=batch_rows)
    import pyarrow.parquet as pq  # noqa: PLC0415  (only Parquet inputs need it)

    try:
        parquet = pq.ParquetFile(path)
    except pa.ArrowInvalid as exc:
        raise ValidationFailed(f"{path} is not a Parquet file: {exc}") from None
    return _Source(ref, parquet.schema_arrow, parquet.iter_batches(batch_size=batch_rows))


def _csv(path: Path, ref: str, *, batch_rows: int) -> _Source:
    import pyarrow.csv as pcsv  # noqa: PLC0415  (only CSV inputs need it)

    # A block of about batch_rows rows at ~100 bytes each; types come from the first block.
    options = pcsv.ReadOptions(block_size=max(1 << 20, min(batch_rows * 100, 1 << 28)))
    try:
        reader = pcsv.open_csv(path, read_options=options)
    except pa.ArrowInvalid as exc:
        raise ValidationFailed(f"cannot read {path} as CSV: {exc}") from None
    return _Source(ref, reader.schema, iter(reader))


def _check_columns(served: ServedModel, source: _Source, keep: Sequence[str]) -> None:
    have = set(source.schema.names)
    inputs = list(served.schema.names)
    missing = [name for name in inputs if name not in have]
    if missing:
        raise ValidationFailed(
            f"{source.ref} has no column(s) {missing} that model {served.ref} takes; its "
            f"signature's inputs are {inputs}. Score data with every input column"
        )
    clash = [name for name in keep if name in {"row", "prediction"}]
    if clash:
        raise ValidationFailed(f"cannot keep {clash}: the scores have their own such column")
    absent = [name for name in keep if name not in have]
    if absent:
        raise ValidationFailed(
            f"cannot keep column(s) {absent}: {source.ref} has {source.schema.names}"
        )


def _write(
    served: ServedModel, source: _Source, keep: Sequence[str], path: Path, *, batch_rows: int
) -> int:
    import pyarrow.parquet as pq  # noqa: PLC0415  (heavy; on first use)

    writer: pq.ParquetWriter | None = None
    start = 0
    try:
        for batch in _batches(source, batch_rows):
            scored = _score(served, batch, keep, start, source.ref)
            if writer is None:
                writer = pq.ParquetWriter(path, scored.schema)
            writer.write_batch(scored)
            start += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    if start == 0:
        raise ValidationFailed(f"{source.ref} has no rows to score")
    return start


def _batches(source: _Source, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The source's batches cut to ``batch_rows``; a CSV block whose types differ is named."""
    try:
        for batch in source.batches:
            for start in range(0, batch.num_rows, batch_rows):
                yield batch.slice(start, batch_rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValidationFailed(
            f"cannot read {source.ref}: {exc}. Column types are taken from the first rows; "
            "register the data as a dataset (or write it as Parquet) to fix them"
        ) from None


def _score(
    served: ServedModel, batch: pa.RecordBatch, keep: Sequence[str], start: int, ref: str
) -> pa.RecordBatch:
    schema = served.schema
    columns = {name: _values(batch.column(name)) for name in schema.names}
    try:
        rows = schema.from_columns(columns, batch.num_rows)
    except ValidationFailed as exc:
        raise ValidationFailed(
            f"{ref}, rows {start:,} to {start + batch.num_rows - 1:,} (the row numbers below "
            f"count from {start:,}): {exc}"
        ) from None
    predictions = served.predict(rows)
    scored: dict[str, Any] = {  # Any: Arrow arrays
        "row": pa.array(np.arange(start, start + batch.num_rows, dtype=np.int64)),
        **{name: batch.column(name) for name in keep},
        "prediction": _prediction_array(predictions),
    }
    return pa.RecordBatch.from_pydict(scored)


def _values(column: pa.Array) -> np.ndarray:
    """An Arrow column as NumPy, nulls of number columns as NaN (the signature decides)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    values: np.ndarray = column.to_numpy(zero_copy_only=False)
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return values.astype(np.float64, copy=False)
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        return values.astype("datetime64[ns]")
    return values


def _prediction_array(predictions: np.ndarray) -> pa.Array:
    if predictions.ndim == 2:  # a multi-output model: one list per row
        return pa.array(list(predictions))
    if predictions.dtype.kind in "fiub":
        return pa.array(predictions)
    return pa.array(predictions.tolist())
