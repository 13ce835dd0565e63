"""MLflow's model format, both ways, without pickle where MLflow allows it.

MLflow (3.x) reads scikit-learn models stored with skops, so an export is a
directory MLflow would have written itself: ``MLmodel`` with a
``python_function`` and a ``sklearn`` flavor (``serialization_format:
skops``), the environment files and the skops file. ``mlflow`` is never
imported: the files are written and read here, so it stays out of our
dependencies. An import reads a skops model through our allow-list; a pickled
one runs code when loaded, so it needs ``trust=True``.
"""

from __future__ import annotations

import json
import pickle
import platform
import shutil
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mlcycle.errors import Untrusted, ValidationFailed
from mlcycle.registry._sklearn import SklearnFlavor

if TYPE_CHECKING:
    import pandas as pd

    from mlcycle.registry._signature import Signature

__all__ = [
    "MLFLOW_FORMAT_VERSION",
    "mlflow_input_example",
    "read_mlflow_model",
    "write_mlflow_model",
]

MLFLOW_FORMAT_VERSION = "3.17.2"
"""The MLflow release whose model format the export follows (and the interop test runs)."""

_MODEL_FILE = "model.skops"
_MLFLOW_TYPES = {
    "float64": "double",
    "int64": "long",
    "bool": "boolean",
    "string": "string",
    "category": "string",
    "datetime": "datetime",
}
_REQUIREMENTS = ("scikit-learn", "skops", "numpy", "pandas")


def write_mlflow_model(
    model: object | Path,
    dest_dir: Path,
    *,
    signature: Signature | None = None,
    input_example: pd.DataFrame | None = None,
) -> Path:
    """Write a scikit-learn model (or a ``.skops`` file) as an MLflow model directory.

    ``mlflow.pyfunc.load_model(dest_dir).predict(frame)`` then works, as does
    ``mlflow.sklearn.load_model``; the model is stored with skops, never pickled.

    Raises:
        ValidationFailed: ``model`` is not a scikit-learn model, or ``dest_dir`` is not empty.
    """
    if dest_dir.exists() and any(dest_dir.iterdir()):
        raise ValidationFailed(f"{dest_dir} is not empty; export an MLflow model to a new folder")
    flavor = SklearnFlavor()
    if not isinstance(model, Path) and not flavor.handles(model):
        kind = type(model)
        raise ValidationFailed(
            f"MLflow export supports scikit-learn models (stored with skops), not "
            f"{kind.__module__}.{kind.__qualname__}"
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / _MODEL_FILE
    if isinstance(model, Path):
        shutil.copyfile(model, target)
    else:
        flavor.save(model, target)
    import skops.io  # noqa: PLC0415  (imported already by the save or for the file)

    trusted = sorted(skops.io.get_untrusted_types(file=target))
    files = _environment_files()
    for name, text in files.items():
        (dest_dir / name).write_text(text)
    document = _mlmodel(trusted, size=target.stat().st_size, signature=signature)
    if input_example is not None:
        document["saved_input_example_info"] = _write_example(dest_dir, input_example)
    (dest_dir / "MLmodel").write_text(yaml.safe_dump(document, sort_keys=True))
    return dest_dir


def _mlmodel(
    trusted: list[str], *, size: int, signature: Signature | None
) -> dict[str, Any]:  # Any: YAML values
    python = platform.python_version()
    document: dict[str, Any] = {  # Any: YAML values
        "flavors": {
            "python_function": {
                "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
                "loader_module": "mlflow.sklearn",
                "model_path": _MODEL_FILE,
                "predict_fn": "predict",
                "python_version": python,
            },
            "sklearn": {
                "code": None,
                "pickled_model": _MODEL_FILE,
                "serialization_format": "skops",
                "sklearn_version": version("scikit-learn"),
                "skops_trusted_types": trusted or None,
            },
        },
        "mlflow_version": MLFLOW_FORMAT_VERSION,
        "model_size_bytes": size,
        "model_uuid": uuid.uuid4().hex,
        "utc_time_created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
    }
    if signature is not None:
        document["signature"] = {
            "inputs": json.dumps([_column(spec, named=True) for spec in signature.inputs]),
            "outputs": json.dumps([_column(spec, named=False) for spec in signature.outputs]),
            "params": None,
        }
    return document


def _column(spec: Any, *, named: bool) -> dict[str, Any]:  # Any: a ColumnSpec; JSON values
    column: dict[str, Any] = {"type": _MLFLOW_TYPES.get(spec.type, "string"), "required": True}
    if named:
        column["name"] = spec.name
        column["required"] = not spec.nullable
    return column


def _pinned(distribution: str) -> str:
    try:
        return f"{distribution}=={version(distribution)}"
    except PackageNotFoundError:  # pragma: no cover - all four come with mlcycle
        return distribution


def _environment_files() -> dict[str, str]:
    requirements = [f"mlflow>={MLFLOW_FORMAT_VERSION}", *map(_pinned, _REQUIREMENTS)]
    python = platform.python_version()
    conda = {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": [f"python={python}", "pip", {"pip": requirements}],
    }
    python_env = {
        "python": python,
        "build_dependencies": ["pip", "setuptools", "wheel"],
        "dependencies": ["-r requirements.txt"],
    }
    return {
        "requirements.txt": "\n".join(requirements) + "\n",
        "conda.yaml": yaml.safe_dump(conda, sort_keys=False),
        "python_env.yaml": yaml.safe_dump(python_env, sort_keys=False),
    }


def _write_example(dest_dir: Path, example: pd.DataFrame) -> dict[str, str]:
    split = json.loads(example.to_json(orient="split", index=False, date_format="iso"))
    (dest_dir / "input_example.json").write_text(json.dumps(split))
    serving = {"dataframe_split": split}
    (dest_dir / "serving_input_example.json").write_text(json.dumps(serving, indent=2))
    return {
        "artifact_path": "input_example.json",
        "pandas_orient": "split",
        "serving_input_path": "serving_input_example.json",
        "type": "dataframe",
    }


def read_mlflow_model(
    path: Path,
    *,
    trust: bool = False,
    trusted_types: Sequence[str] = (),
) -> object:
    """The scikit-learn model of an MLflow model directory.

    A skops-serialized model is read through the allow-list (plus
    ``trusted_types``; the list in ``MLmodel`` comes from the file itself and
    is ignored). A pickled or cloudpickled one runs code when read, so it is
    read only with ``trust=True``; store the result with the registry to keep
    it as skops from then on.

    Raises:
        Untrusted: a pickled model without ``trust=True``, or a type outside the allow-list.
        ValidationFailed: no ``MLmodel``, no scikit-learn flavor, or not a scikit-learn model.
    """
    flavor = _sklearn_flavor(path)
    model_file = (path / str(flavor.get("pickled_model", ""))).resolve()
    if not model_file.is_relative_to(path.resolve()) or not model_file.is_file():
        raise ValidationFailed(f"{path} names no model file inside it ({model_file.name})")
    serialization = flavor.get("serialization_format", "pickle")
    if serialization == "skops":
        return SklearnFlavor().load(model_file, trusted_types=trusted_types)
    if serialization not in {"pickle", "cloudpickle"}:
        raise ValidationFailed(f"{path} uses an unknown serialization format {serialization!r}")
    if not trust:
        raise Untrusted(
            f"the MLflow model {path} is stored with {serialization}, which runs code when "
            "loaded; pass trust=True only if you trust its publisher (it is then stored as skops)"
        )
    with model_file.open("rb") as stream:
        try:
            model = pickle.load(stream)  # noqa: S301  (the caller passed trust=True)
        except (pickle.UnpicklingError, ImportError, AttributeError, EOFError) as exc:
            raise ValidationFailed(f"{model_file.name} cannot be unpickled: {exc}") from exc
    if not SklearnFlavor().handles(model):
        kind = type(model)
        raise ValidationFailed(
            f"{path} holds a {kind.__module__}.{kind.__qualname__}, not a scikit-learn model"
        )
    return model


def _sklearn_flavor(path: Path) -> dict[str, Any]:  # Any: YAML values
    mlmodel = path / "MLmodel"
    if not mlmodel.is_file():
        raise ValidationFailed(f"{path} is not an MLflow model directory (no MLmodel file)")
    try:
        document = yaml.safe_load(mlmodel.read_text())
    except yaml.YAMLError as exc:
        raise ValidationFailed(f"{mlmodel} is not valid YAML: {exc}") from exc
    flavors = document.get("flavors") if isinstance(document, dict) else None
    if not isinstance(flavors, dict) or not isinstance(flavors.get("sklearn"), dict):
        names = ", ".join(sorted(flavors)) if isinstance(flavors, dict) else "none"
        raise ValidationFailed(
            f"{path} has no sklearn flavor (its flavors: {names}); only scikit-learn MLflow "
            "models can be imported"
        )
    sklearn_flavor: dict[str, Any] = flavors["sklearn"]
    return sklearn_flavor


def mlflow_input_example(path: Path) -> pd.DataFrame | None:
    """The input example an MLflow model directory saved in pandas' split form, if any."""
    import pandas as pd  # noqa: PLC0415  (with the data)

    try:
        document = yaml.safe_load((path / "MLmodel").read_text())
    except (OSError, yaml.YAMLError):
        return None
    info = document.get("saved_input_example_info") if isinstance(document, dict) else None
    if not isinstance(info, dict) or info.get("pandas_orient", "split") != "split":
        return None
    example = (path / str(info.get("artifact_path", ""))).resolve()
    if not example.is_relative_to(path.resolve()) or not example.is_file():
        return None
    try:
        split = json.loads(example.read_text())
        return pd.DataFrame(split["data"], columns=split["columns"])
    except (ValueError, KeyError, TypeError):
        return None  # an example is a convenience; a model without one imports all the same
