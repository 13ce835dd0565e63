"""Step outputs in the artifact store, with a serializer chosen by the output's type.

DataFrames (pandas, polars) and Arrow tables go as Parquet, numpy arrays as
``.npy`` without pickle, JSON-able values as JSON, and models through the
registry's safe flavors. Anything else needs an explicit ``@step(pickle=True)``,
and a pickled output loads only when trusted through the registry's one trust
mechanism (``require_trust``). A JSON output of at most ``INLINE_LIMIT`` bytes
(a count, a dict of metrics) is kept in the step's record rather than as a
blob: a file written and synced per step would cost more than the step.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mlcycle.errors import IntegrityError, ValidationFailed
from mlcycle.ids import Digest
from mlcycle.registry import get_flavor, known_flavors, require_trust
from mlcycle.settings import Settings
from mlcycle.store import ArtifactStore, StepOutput

__all__ = ["INLINE_LIMIT", "StoredValue", "load_output", "store_output"]

INLINE_LIMIT = 4096
"""Bytes of JSON up to which an output is kept in its step record instead of the artifact store."""
PICKLE = "pickle"
_SAFE = "DataFrames and Arrow tables (Parquet), numpy arrays, JSON-able values"


@dataclass(frozen=True, slots=True)
class StoredValue:
    """An output's bytes and how to read them back."""

    body: bytes
    serializer: str


def _type_name(value: object) -> str:
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _is_json(value: object) -> bool:
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_is_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def _parquet(table: Any) -> bytes:  # Any: a pyarrow Table
    import pyarrow.parquet as pq  # noqa: PLC0415  (pyarrow loads on first use)

    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _serialise(value: object, *, allow_pickle: bool) -> StoredValue | None:  # noqa: PLR0911  (one return per type)
    module = type(value).__module__.split(".")[0]
    if module == "pandas" and type(value).__name__ == "DataFrame":
        import pyarrow as pa  # noqa: PLC0415  (pyarrow loads on first use)

        return StoredValue(_parquet(pa.Table.from_pandas(value)), "pandas.parquet")
    if module == "polars" and type(value).__name__ == "DataFrame":
        return StoredValue(_parquet(value.to_arrow()), "polars.parquet")  # type: ignore[attr-defined]
    if module == "pyarrow" and type(value).__name__ == "Table":
        return StoredValue(_parquet(value), "arrow.parquet")
    if module == "numpy" and type(value).__name__ == "ndarray":
        return _numpy(value)
    if _is_json(value):
        return StoredValue(orjson.dumps(value), "json")
    for flavor in known_flavors():
        if flavor.safe and flavor.handles(value):
            return StoredValue(_flavor_bytes(flavor.name, value), f"model.{flavor.name}")
    if allow_pickle:
        return StoredValue(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), PICKLE)
    return None


def _numpy(value: Any) -> StoredValue | None:  # Any: a numpy array
    import numpy as np  # noqa: PLC0415  (numpy loads on first use)

    if value.dtype.hasobject:
        return None
    sink = io.BytesIO()
    np.save(sink, value, allow_pickle=False)
    return StoredValue(sink.getvalue(), "numpy.npy")


def _flavor_bytes(name: str, model: object) -> bytes:
    flavor = get_flavor(name)
    with tempfile.TemporaryDirectory(prefix="mlcycle-step-") as folder:
        path = Path(folder) / f"model{flavor.suffix}"
        flavor.save(model, path)
        return path.read_bytes()


def store_output(
    value: object, *, step: str, allow_pickle: bool, artifacts: ArtifactStore, publisher: str
) -> StepOutput:
    """Serialise ``value`` by type and put it in the artifact store; errors name step and type."""
    stored = _serialise(value, allow_pickle=allow_pickle)
    if stored is None:
        models = ", ".join(f.name for f in known_flavors() if f.safe)
        raise ValidationFailed(
            f"step '{step}' returned a {_type_name(value)}, which no safe serializer handles "
            f"({_SAFE}, and models of the flavors {models}). Return one of those, or declare "
            f"@step(pickle=True) on '{step}' to store it with pickle (loading it back then "
            "needs trust=True or a trusted publisher)"
        )
    inline = stored.serializer == "json" and len(stored.body) <= INLINE_LIMIT
    digest = _digest(stored.body) if inline else artifacts.put(io.BytesIO(stored.body))
    return StepOutput(
        digest=digest,
        serializer=stored.serializer,
        type=_type_name(value),
        size=len(stored.body),
        publisher=publisher if stored.serializer == PICKLE else None,
        inline=stored.body.decode() if inline else None,
    )


def _digest(body: bytes) -> Digest:
    """The digest the artifact store gives ``body``."""
    return Digest(f"sha256:{hashlib.sha256(body).hexdigest()}")


def load_output(
    output: StepOutput, *, what: str, artifacts: ArtifactStore, settings: Settings, trust: bool
) -> object:
    """Read a stored output back; a pickled one only when trusted (``require_trust``)."""
    if output.serializer == PICKLE:
        require_trust(what, trust=trust, publisher=output.publisher, settings=settings)
    if output.inline is not None:
        body = output.inline.encode()
        if _digest(body) != output.digest:
            raise IntegrityError(
                f"{what} kept in its step record no longer matches its digest "
                f"{output.digest}; run the step again (`--no-cache`)"
            )
    else:
        with artifacts.open(output.digest) as stream:
            body = stream.read()
    return _deserialise(body, output.serializer, settings=settings)


def _deserialise(body: bytes, serializer: str, *, settings: Settings) -> object:  # noqa: PLR0911  (one return per format)
    if serializer.endswith(".parquet"):
        import pyarrow.parquet as pq  # noqa: PLC0415  (pyarrow loads on first use)

        table = pq.read_table(io.BytesIO(body))
        if serializer == "pandas.parquet":
            return table.to_pandas()
        if serializer == "polars.parquet":
            import polars as pl  # noqa: PLC0415  (the polars extra)

            return pl.from_arrow(table)
        return table
    if serializer == "numpy.npy":
        import numpy as np  # noqa: PLC0415  (numpy loads on first use)

        return np.load(io.BytesIO(body), allow_pickle=False)
    if serializer == "json":
        return orjson.loads(body)
    if serializer.startswith("model."):
        flavor = get_flavor(serializer.removeprefix("model."))
        with tempfile.TemporaryDirectory(prefix="mlcycle-step-") as folder:
            path = Path(folder) / f"model{flavor.suffix}"
            path.write_bytes(body)
            return flavor.load(path, trusted_types=settings.registry.trusted_types)
    if serializer == PICKLE:
        return pickle.loads(body)  # noqa: S301  (trusted above through require_trust)
    raise ValidationFailed(f"unknown step output serializer '{serializer}'; upgrade mlcycle")
