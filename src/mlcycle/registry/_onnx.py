"""ONNX models served through ONNX Runtime, and scikit-learn models converted to ONNX.

An ONNX file is a graph of standard operators and weights, with no code to
run on load, so the flavor is safe. Conversion is checked: predictions of the
converted model must match the original within 1e-5 relative or 1e-6
absolute on the example rows, or ``convert_to_onnx`` refuses with the
difference, and the registry records the reason and keeps the original only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.errors import ValidationFailed
from mlcycle.registry._onnx_trees import TREE_ENSEMBLES, tree_ensemble_to_onnx

if TYPE_CHECKING:
    import numpy as np
    import onnx
    import pandas as pd

__all__ = ["ABSOLUTE_TOLERANCE", "RELATIVE_TOLERANCE", "OnnxFlavor", "convert_to_onnx"]

RELATIVE_TOLERANCE = 1e-5
ABSOLUTE_TOLERANCE = 1e-6

_TREES_OPSET = 21
_NUMPY_TYPES = {"tensor(double)": "float64", "tensor(float)": "float32", "tensor(int64)": "int64"}


class OnnxFlavor:
    """ONNX models (``onnx.ModelProto``), loaded as ONNX Runtime sessions on the CPU."""

    name = "onnx"
    safe = True
    suffix = ".onnx"

    def handles(self, model: object) -> bool:
        """Whether ``model`` is an ``onnx.ModelProto``."""
        kind = type(model)
        return kind.__module__.split(".", 1)[0] == "onnx" and kind.__name__ == "ModelProto"

    def save(self, model: object, path: Path) -> None:
        """Write the serialized graph."""
        path.write_bytes(model.SerializeToString())  # type: ignore[attr-defined]  # a ModelProto

    def load(self, path: Path, *, trusted_types: Sequence[str] = ()) -> object:
        """An ONNX Runtime session on ``path``; ``trusted_types`` does not apply to ONNX."""
        del trusted_types
        return _session(path.read_bytes(), name=path.name)

    def predict(self, model: object, frame: pd.DataFrame) -> np.ndarray:
        """The session's ``label`` output when it has one (a classifier), else its first output."""
        if self.handles(model):  # a ModelProto, as register predicts its input example with
            model = _session(model.SerializeToString(), name="model")  # type: ignore[attr-defined]
        outputs = run_onnx(model, frame)
        prediction = outputs.get("label", next(iter(outputs.values())))
        if prediction.ndim == 2 and prediction.shape[1] == 1:
            return prediction.ravel()
        return prediction


def _session(content: bytes, *, name: str) -> Any:  # Any: an onnxruntime.InferenceSession
    import onnxruntime  # noqa: PLC0415  (the onnx extra, loaded when an ONNX model is)

    options = onnxruntime.SessionOptions()
    # One thread: single-row latency matters more than throughput, and servers run many workers.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        return onnxruntime.InferenceSession(content, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
        raise ValidationFailed(f"{name} is not an ONNX model ONNX Runtime can run: {exc}") from exc


def run_onnx(session: Any, frame: pd.DataFrame) -> dict[str, np.ndarray]:  # Any: a session
    """Every output of ``session`` for the rows of ``frame``, by output name.

    A graph with one input takes the whole frame as a matrix; a graph with one
    input per column takes each column by name.
    """
    import numpy as np  # noqa: PLC0415  (light: already loaded with pandas)

    inputs = session.get_inputs()
    if len(inputs) == 1:
        dtype = _NUMPY_TYPES.get(inputs[0].type, "float64")
        feeds = {inputs[0].name: np.ascontiguousarray(frame.to_numpy(dtype=dtype))}
    else:
        feeds = {
            spec.name: frame[[spec.name]].to_numpy(dtype=_NUMPY_TYPES.get(spec.type, object))
            for spec in inputs
        }
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def convert_to_onnx(
    model: object,
    example: pd.DataFrame,
    *,
    check: pd.DataFrame | None = None,
) -> onnx.ModelProto:
    """A scikit-learn model as ONNX, refused unless it predicts the same on the check rows.

    Tree ensembles (decision trees, random forests, extra trees, gradient
    boosting and histogram gradient boosting) are written in float64 so no
    threshold flips; other models go through skl2onnx. The converted model
    takes one float64 matrix ``X``, columns in the order of ``example``. The
    predictions (and class probabilities) of both are compared on ``check``
    (the example rows when ``None``); the largest differences are kept in the
    model's metadata (``mlcycle.max_abs_diff``, ``mlcycle.max_rel_diff``).

    Raises:
        ValidationFailed: the model cannot be converted exactly; the message says why.
    """
    import numpy as np  # noqa: PLC0415  (light: already loaded with pandas)

    try:
        matrix = np.ascontiguousarray(example.to_numpy(dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"ONNX conversion needs numeric input columns: {exc}") from exc
    if _is_tree_ensemble(model):
        converted = tree_ensemble_to_onnx(model)
    elif hasattr(model, "steps") and _is_tree_ensemble(model.steps[-1][1]):
        converted = _pipeline_with_trees(model, features=matrix.shape[1])
    else:
        converted = _skl2onnx(model, features=matrix.shape[1])
    rows = example if check is None else check
    worst_abs, worst_rel = _compare(model, converted, rows)
    for key, value in (("mlcycle.max_abs_diff", worst_abs), ("mlcycle.max_rel_diff", worst_rel)):
        entry = converted.metadata_props.add()
        entry.key, entry.value = key, repr(value)
    return converted


def _is_tree_ensemble(model: object) -> bool:
    kind = type(model)
    return kind.__module__.startswith("sklearn.") and kind.__name__ in TREE_ENSEMBLES


def _pipeline_with_trees(model: Any, *, features: int) -> onnx.ModelProto:  # Any: a Pipeline
    """The pipeline's transformers through skl2onnx, joined to its final trees in float64."""
    import onnx.compose  # noqa: PLC0415  (the onnx extra)

    head = _skl2onnx(model[:-1], features=features, opsets={"": _TREES_OPSET, "ai.onnx.ml": 5})
    joint = "mlcycle_features"
    for node in head.graph.node:
        node.output[:] = [
            joint if name == head.graph.output[0].name else name for name in node.output
        ]
    head.graph.output[0].name = joint
    trees = tree_ensemble_to_onnx(model.steps[-1][1], input_name=joint)
    trees.ir_version = head.ir_version
    versions = {entry.domain: entry.version for entry in head.opset_import}
    for entry in trees.opset_import:  # merging needs one version per domain
        entry.version = max(versions.get(entry.domain, entry.version), entry.version)
    for entry in head.opset_import:
        entry.version = max(
            entry.version, *(t.version for t in trees.opset_import if t.domain == entry.domain)
        )
    try:
        return onnx.compose.merge_models(head, trees, io_map=[(joint, joint)])
    except ValueError as exc:
        raise ValidationFailed(
            f"the pipeline's steps and trees do not join in ONNX: {exc}"
        ) from exc


def _skl2onnx(
    model: object, *, features: int, opsets: dict[str, int] | None = None
) -> onnx.ModelProto:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skl2onnx and its onnxconverter-common deprecations
            from skl2onnx import convert_sklearn  # noqa: PLC0415  (slow: only to convert)
            from skl2onnx.common.data_types import DoubleTensorType  # noqa: PLC0415
            from sklearn.base import is_classifier  # noqa: PLC0415
    except ImportError as exc:
        raise ValidationFailed(
            "converting to ONNX needs the onnx extra: pip install 'mlcycle[onnx]'"
        ) from exc
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    options = {id(final): {"zipmap": False}} if is_classifier(final) else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converted = convert_sklearn(
                model,
                initial_types=[("X", DoubleTensorType([None, features]))],
                options=options,
                target_opset=opsets or {"": 17, "ai.onnx.ml": 3},
            )
        _session(converted.SerializeToString(), name=type(model).__name__)
    except Exception as exc:  # skl2onnx raises many unrelated types for unsupported models
        raise ValidationFailed(
            f"{type(model).__name__} cannot be converted to ONNX in float64: {exc}"
        ) from exc
    return converted  # type: ignore[no-any-return]  # skl2onnx is untyped


def _compare(model: Any, converted: onnx.ModelProto, rows: pd.DataFrame) -> tuple[float, float]:
    """The largest absolute and relative differences; ``ValidationFailed`` beyond tolerance."""
    import numpy as np  # noqa: PLC0415  (light: already loaded with pandas)

    outputs = run_onnx(_session(converted.SerializeToString(), name="converted"), rows)
    name = type(model).__name__
    if "probabilities" in outputs and hasattr(model, "predict_proba"):
        labels = np.asarray(model.predict(rows))
        if not np.array_equal(outputs["label"].astype(labels.dtype), labels):
            raise ValidationFailed(f"{name} converted to ONNX predicts other labels; kept as is")
        expected = np.asarray(model.predict_proba(rows), dtype=np.float64)
        got = outputs["probabilities"]
    else:
        expected = np.asarray(model.predict(rows), dtype=np.float64).ravel()
        got = next(iter(outputs.values())).astype(np.float64).ravel()
    if got.shape != expected.shape:
        raise ValidationFailed(
            f"{name} converted to ONNX gives shape {got.shape}, not {expected.shape}"
        )
    difference = np.abs(got - expected)
    relative = difference / np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
    within = (difference <= ABSOLUTE_TOLERANCE) | (relative <= RELATIVE_TOLERANCE)
    worst_abs = float(difference.max(initial=0.0))
    worst_rel = float(np.where(difference == 0, 0.0, relative).max(initial=0.0))
    if not within.all():
        raise ValidationFailed(
            f"{name} converted to ONNX differs by up to {worst_abs:.3g} "
            f"({worst_rel:.3g} relative) on {int((~within).sum())} of {within.size} values, "
            f"beyond {RELATIVE_TOLERANCE:g} relative or {ABSOLUTE_TOLERANCE:g} absolute"
        )
    return worst_abs, worst_rel
