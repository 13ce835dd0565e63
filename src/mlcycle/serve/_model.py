"""A registered model version ready to serve: loaded, with the fastest predict it has.

A version with an ONNX copy is served by ONNX Runtime straight from the
request's float64 matrix, with no DataFrame in between; any other version
goes through its flavor with a DataFrame built once per batch. Loading goes
through the registry, so its trust rules hold: a pickled model whose
publisher is not trusted is refused before any of its code runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mlcycle.serve._rows import Rows, Schema

if TYPE_CHECKING:
    from mlcycle.registry import LoadedModel, ModelRegistry, Signature

__all__ = ["ServedModel", "load_model"]

_ONNX_TYPES = {"tensor(double)": np.float64, "tensor(float)": np.float32, "tensor(int64)": np.int64}


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version and how to predict with it."""

    name: str
    version: int
    signature: Signature
    schema: Schema
    runtime: Literal["onnx", "native"]
    predict: Callable[[Rows], np.ndarray]
    """Predictions for checked rows, one per row (a 2-D array for multi-output models)."""

    @property
    def ref(self) -> str:
        """The version as a registry reference: ``bike-demand/3``."""
        return f"{self.name}/{self.version}"


def load_model(registry: ModelRegistry, ref: str, *, max_rows: int) -> ServedModel:
    """Load the version ``ref`` names, through ONNX Runtime when it has an ONNX copy.

    Raises whatever the registry raises: ``NotFound``, ``Untrusted`` (a
    pickled model nobody trusts), ``IntegrityError`` (a changed file).
    """
    version = registry.get(ref)
    runtime: Literal["onnx", "native"] = "onnx" if "onnx" in version.files else "native"
    loaded = registry.load(version, runtime=runtime)
    schema = Schema.of(loaded.signature, max_rows=max_rows)
    predict = _onnx_predict(loaded, schema) if runtime == "onnx" else _native_predict(loaded)
    return ServedModel(
        name=version.name,
        version=version.version,
        signature=loaded.signature,
        schema=schema,
        runtime=runtime,
        predict=predict,
    )


def _onnx_predict(loaded: LoadedModel, schema: Schema) -> Callable[[Rows], np.ndarray]:
    session: Any = loaded.model  # Any: an onnxruntime.InferenceSession
    inputs = session.get_inputs()
    names = [output.name for output in session.get_outputs()]
    wanted = "label" if "label" in names else names[0]
    if len(inputs) == 1 and schema.numeric:
        feed, dtype = inputs[0].name, _ONNX_TYPES.get(inputs[0].type, np.float64)

        def predict_matrix(rows: Rows) -> np.ndarray:
            assert rows.matrix is not None, "numeric schemas always build a matrix"
            matrix = rows.matrix if dtype is np.float64 else rows.matrix.astype(dtype)
            return _one_per_row(_flat(session.run([wanted], {feed: matrix})[0]), rows)

        return predict_matrix
    types = {spec.name: _ONNX_TYPES.get(spec.type, object) for spec in inputs}

    def predict_columns(rows: Rows) -> np.ndarray:
        feeds = {
            name: rows.columns[name].astype(dtype, copy=False).reshape(-1, 1)
            for name, dtype in types.items()
        }
        return _one_per_row(_flat(session.run([wanted], feeds)[0]), rows)

    return predict_columns


def _native_predict(loaded: LoadedModel) -> Callable[[Rows], np.ndarray]:
    import pandas as pd  # noqa: PLC0415  (only models without an ONNX copy need it)

    integers = [spec.name for spec in loaded.signature.inputs if spec.type == "int64"]

    def predict_frame(rows: Rows) -> np.ndarray:
        frame = pd.DataFrame(dict(rows.columns), copy=False)
        for name in integers:
            if not frame[name].isna().any():
                frame[name] = frame[name].astype(np.int64)
        return _one_per_row(np.asarray(loaded.predict(frame)), rows)

    return predict_frame


def _one_per_row(predictions: np.ndarray, rows: Rows) -> np.ndarray:
    """``predictions``, when the model gave one per row; else the error that says so.

    Outputs are handed back to the requests of a batch by position: a model
    returning fewer or more would hand some requests others' predictions, or
    none. The batcher then predicts each request alone, so only one whose own
    rows the model miscounts gets the error (a 500 with an error id).
    """
    count = len(predictions) if predictions.ndim else 1
    if count != rows.count:
        raise RuntimeError(
            f"the model returned {count} predictions for {rows.count} rows; a model must "
            "return one prediction (or one row of outputs) per input row"
        )
    return predictions


def _flat(prediction: np.ndarray) -> np.ndarray:
    if prediction.ndim == 2 and prediction.shape[1] == 1:
        return prediction.ravel()
    return prediction
