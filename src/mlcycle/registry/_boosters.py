"""The single-file container of the gradient boosting flavors: a native model plus JSON.

XGBoost and LightGBM save their models in their own formats (UBJSON, model
text), which hold trees and parameters only. The scikit-learn wrappers around
them carry a little more (which class, its parameters, the class labels), so
both flavors write one zip: the native model and ``mlcycle.json``. Nothing in
it is unpickled; the wrapper class is picked from a fixed list by name.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.errors import ValidationFailed

if TYPE_CHECKING:
    import numpy as np

__all__ = ["decode_labels", "encode_labels", "json_params", "read_container", "write_container"]

META = "mlcycle.json"


def write_container(path: Path, *, model_name: str, model: bytes, meta: dict[str, Any]) -> None:
    """Write the native ``model`` bytes and ``meta`` (JSON values) into the zip ``path``."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(model_name, model)
        archive.writestr(META, json.dumps(meta, sort_keys=True))


def read_container(path: Path, *, model_name: str) -> tuple[bytes, dict[str, Any]]:  # Any: JSON
    """The native model bytes and the metadata written by ``write_container``."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read(model_name), json.loads(archive.read(META))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ValidationFailed(
            f"{path.name} is not a model file written by mlcycle: {exc}"
        ) from exc


def json_params(params: dict[str, Any]) -> dict[str, Any]:  # Any: estimator parameters
    """The parameters that survive JSON as they are; others (callables, objects) are dropped."""
    kept = {}
    for key, value in params.items():
        try:
            if json.loads(json.dumps(value)) == value:
                kept[key] = value
        except (TypeError, ValueError):
            continue
    return kept


def encode_labels(classes: np.ndarray) -> dict[str, Any]:  # Any: JSON values
    """Class labels as JSON, with the dtype to restore them."""
    return {"labels": classes.tolist(), "dtype": classes.dtype.str}


def decode_labels(data: dict[str, Any]) -> np.ndarray:  # Any: JSON values
    """Class labels written by ``encode_labels``."""
    import numpy as np  # noqa: PLC0415  (light: already loaded with pandas)

    dtype = np.dtype(data["dtype"])
    if dtype.kind not in "biufUS":  # objects (strings in an object array) stay objects
        dtype = np.dtype(object)
    return np.asarray(data["labels"], dtype=dtype)
