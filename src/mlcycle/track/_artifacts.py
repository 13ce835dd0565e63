"""Objects a run logs as artifacts, turned into bytes with a media type and stored by content.

Artifacts are rare and large, so they are written at once rather than
buffered. pandas and matplotlib are never imported here: an object is only
treated as a DataFrame or a figure when its module is already loaded.
"""

from __future__ import annotations

import io
import mimetypes
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from mlcycle.clock import Clock
from mlcycle.errors import ValidationFailed
from mlcycle.ids import Digest, RunId
from mlcycle.store import ArtifactIndex, ArtifactRecord, ArtifactStore, check_artifact_name

__all__ = ["serialise", "store_artifact"]

JSON = "application/json"
PARQUET = "application/vnd.apache.parquet"
PNG = "image/png"
OCTET = "application/octet-stream"


def store_artifact(
    obj: object,
    name: str | None,
    *,
    run_id: RunId,
    blobs: ArtifactStore,
    index: ArtifactIndex,
    clock: Clock,
) -> ArtifactRecord:
    """Store ``obj`` in ``blobs`` and record it in ``index`` as the run's artifact ``name``."""
    if isinstance(obj, str | os.PathLike):
        path = Path(obj)
        name = check_artifact_name(name if name is not None else path.name)
        _check_file(path)
        digest = blobs.put_file(str(path))
        size = path.stat().st_size
        media_type = _guess(name)
    else:
        data, media_type = serialise(obj, name)
        name = check_artifact_name(name)  # type: ignore[arg-type]  # serialise refused None
        digest = blobs.put(io.BytesIO(data))
        size = len(data)
    record = ArtifactRecord(
        run_id=run_id,
        name=name,
        digest=Digest(digest),
        size=size,
        media_type=media_type,
        created_at=clock.now(),
    )
    index.record_artifact(record)
    return record


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise ValidationFailed(
            f"artifact {str(path)!r} is a folder; log its files one at a time, e.g. "
            "for f in folder.rglob('*'): "
            "run.log_artifact(f, name=f'folder/{f.relative_to(folder)}')"
        )
    if not path.is_file():
        raise ValidationFailed(
            f"artifact file {str(path)!r} does not exist; pass an existing path, "
            "or bytes / a dict / a DataFrame / a figure with name=..."
        )


def serialise(obj: Any, name: str | None) -> tuple[bytes, str]:  # Any: any loggable object
    """The bytes and media type ``obj`` is stored as."""
    if name is None:
        raise ValidationFailed(
            f"log_artifact of a {type(obj).__name__} needs a name, "
            "e.g. run.log_artifact(obj, name='report.json')"
        )
    if isinstance(obj, bytes | bytearray | memoryview):
        return bytes(obj), _guess(name)
    if isinstance(obj, dict):
        return _json(obj, name), JSON
    frame_type = _loaded("pandas", "DataFrame")
    if frame_type is not None and isinstance(obj, frame_type):
        buffer = io.BytesIO()
        obj.to_parquet(buffer)
        return buffer.getvalue(), PARQUET
    figure_type = _loaded("matplotlib.figure", "Figure")
    if figure_type is not None and isinstance(obj, figure_type):
        buffer = io.BytesIO()
        obj.savefig(buffer, format="png")
        return buffer.getvalue(), PNG
    raise TypeError(
        f"cannot log a {type(obj).__name__} as artifact {name!r}: pass a file path, bytes, "
        "a dict (stored as JSON), a pandas DataFrame (Parquet) or a matplotlib figure (PNG)"
    )


def _json(obj: dict[Any, Any], name: str) -> bytes:  # Any: whatever JSON can hold
    try:
        return orjson.dumps(
            obj,
            option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY,
        )
    except TypeError as exc:
        raise ValidationFailed(
            f"artifact {name!r} cannot be stored as JSON: {exc}; "
            "convert the values to numbers, text, lists or dicts"
        ) from exc


def _loaded(module: str, attribute: str) -> type[Any] | None:  # Any: a class of a module
    found = sys.modules.get(module)
    kind = getattr(found, attribute, None)
    return kind if isinstance(kind, type) else None


def _guess(name: str) -> str:
    return mimetypes.guess_type(name)[0] or OCTET
