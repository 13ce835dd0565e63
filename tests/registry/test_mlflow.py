"""MLflow interop against real MLflow 3.17.2, installed in a throwaway venv (never in uv.lock).

The venv is cached in ``~/.cache/mlcycle-tests/mlflow-3.17.2`` and built with uv
from PyPI the first time, with our own scikit-learn, skops, numpy and pandas
versions so that models move between the two environments.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from benchmarks._incumbents import incumbent_python
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from mlcycle.errors import Untrusted, ValidationFailed
from mlcycle.registry import (
    ColumnSpec,
    Signature,
    SklearnFlavor,
    read_mlflow_model,
    write_mlflow_model,
)

MLFLOW_VERSION = "3.17.2"
VENV = Path.home() / ".cache" / "mlcycle-tests" / f"mlflow-{MLFLOW_VERSION}"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlflow_python() -> Path:
    pins = [f"{name}=={version(name)}" for name in ("scikit-learn", "skops", "numpy", "pandas")]
    return incumbent_python("mlflow-skinny", MLFLOW_VERSION, pins=pins, venv=VENV, log=print)


def run_in_mlflow(python: Path, script: str) -> str:
    environment = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}
    environment.pop("PYTHONPATH", None)
    result = subprocess.run(
        [str(python), "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame(rng.normal(size=(100, 3)), columns=["a", "b", "c"])


@pytest.fixture(scope="module")
def target(frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(frame["a"] * 2 - frame["c"])


def test_an_export_loads_in_mlflow_pyfunc_without_pickle(
    mlflow_python: Path, frame: pd.DataFrame, target: np.ndarray, tmp_path: Path
) -> None:
    model = HistGradientBoostingRegressor(max_iter=20).fit(frame, target)
    signature = Signature(
        inputs=tuple(ColumnSpec(name, "float64") for name in frame.columns),
        outputs=(ColumnSpec("prediction", "float64"),),
    )
    folder = write_mlflow_model(
        model, tmp_path / "mlflow", signature=signature, input_example=frame[:3]
    )
    assert sorted(path.name for path in folder.iterdir()) == [
        "MLmodel",
        "conda.yaml",
        "input_example.json",
        "model.skops",
        "python_env.yaml",
        "requirements.txt",
        "serving_input_example.json",
    ]
    rows = {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    # MLflow's sklearn loader refuses every format while the pickle switch is off (set above),
    # so the pyfunc load here is turned on for skops only: the switch, not a pickle, is read.
    output = run_in_mlflow(
        mlflow_python,
        f"""
        import json, os
        os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
        import mlflow.pyfunc, pandas as pd, pickle
        pickle.load = pickle.loads = None  # prove no pickle is read
        model = mlflow.pyfunc.load_model({str(folder)!r})
        rows = pd.DataFrame(**json.load(open({str(tmp_path / "rows.json")!r})))
        print(json.dumps(model.predict(rows).tolist()))
        print(json.dumps([c.name for c in model.metadata.get_input_schema().inputs]))
        """,
    )
    predictions, inputs = output.strip().splitlines()[-2:]
    np.testing.assert_array_equal(np.array(json.loads(predictions)), model.predict(frame))
    assert json.loads(inputs) == ["a", "b", "c"]


def test_a_skops_file_exports_as_it_is(
    frame: pd.DataFrame, target: np.ndarray, tmp_path: Path
) -> None:
    model = Ridge().fit(frame, target)
    SklearnFlavor().save(model, tmp_path / "m.skops")
    folder = write_mlflow_model(tmp_path / "m.skops", tmp_path / "out")
    assert (folder / "model.skops").read_bytes() == (tmp_path / "m.skops").read_bytes()
    back = read_mlflow_model(folder)
    np.testing.assert_array_equal(back.predict(frame), model.predict(frame))  # type: ignore[attr-defined]


def test_export_refuses_other_models_and_used_folders(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="supports scikit-learn models"):
        write_mlflow_model(object(), tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("")
    with pytest.raises(ValidationFailed, match="is not empty"):
        write_mlflow_model(Ridge(), tmp_path / "b")


def save_in_mlflow(python: Path, folder: Path, fmt: str, model: object) -> None:
    SklearnFlavor().save(model, folder.parent / f"{fmt}.skops")
    run_in_mlflow(
        python,
        f"""
        import mlflow.sklearn, skops.io
        path = {str(folder.parent / f"{fmt}.skops")!r}
        trusted = skops.io.get_untrusted_types(file=path)
        model = skops.io.load(path, trusted=trusted)
        mlflow.sklearn.save_model(
            model, {str(folder)!r}, serialization_format={fmt!r}, skops_trusted_types=trusted
        )
        """,
    )


@pytest.mark.parametrize("fmt", ["pickle", "cloudpickle"])
def test_pickled_mlflow_models_import_only_with_trust(
    fmt: str, mlflow_python: Path, frame: pd.DataFrame, target: np.ndarray, tmp_path: Path
) -> None:
    model = make_pipeline(StandardScaler(), Ridge()).fit(frame, target)
    save_in_mlflow(mlflow_python, tmp_path / "model", fmt, model)
    with pytest.raises(Untrusted, match=f"stored with {fmt}.*trust=True"):
        read_mlflow_model(tmp_path / "model")
    back = read_mlflow_model(tmp_path / "model", trust=True)
    np.testing.assert_array_equal(back.predict(frame), model.predict(frame))  # type: ignore[attr-defined]
    SklearnFlavor().save(back, tmp_path / "stored.skops")  # and from then on it is skops


def test_skops_mlflow_models_import_through_the_allow_list(
    mlflow_python: Path, frame: pd.DataFrame, target: np.ndarray, tmp_path: Path
) -> None:
    model = HistGradientBoostingRegressor(max_iter=10).fit(frame, target)
    save_in_mlflow(mlflow_python, tmp_path / "model", "skops", model)
    back = read_mlflow_model(tmp_path / "model")
    np.testing.assert_array_equal(back.predict(frame), model.predict(frame))  # type: ignore[attr-defined]

    risky = make_pipeline(FunctionTransformer(np.fliplr), Ridge())
    risky.fit(frame, target)
    save_in_mlflow(mlflow_python, tmp_path / "risky", "skops", risky)
    with pytest.raises(Untrusted, match=r"numpy\.fliplr"):
        read_mlflow_model(tmp_path / "risky", trust=True)
    read_mlflow_model(tmp_path / "risky", trusted_types=["numpy.fliplr"])


def test_import_refuses_folders_that_are_not_mlflow_sklearn_models(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="no MLmodel file"):
        read_mlflow_model(tmp_path)
    (tmp_path / "MLmodel").write_text("flavors:\n  onnx: {}\n")
    with pytest.raises(ValidationFailed, match=r"no sklearn flavor \(its flavors: onnx\)"):
        read_mlflow_model(tmp_path)
    (tmp_path / "MLmodel").write_text("flavors:\n  sklearn: {pickled_model: ../../etc/passwd}\n")
    with pytest.raises(ValidationFailed, match="names no model file inside it"):
        read_mlflow_model(tmp_path)


def test_registry_round_trip_through_mlflow_with_the_cli(
    mlflow_python: Path,
    frame: pd.DataFrame,
    target: np.ndarray,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from mlcycle.cli._app import app
    from mlcycle.settings import Settings
    from mlcycle.workspace import Workspace

    home = tmp_path / "project"
    home.mkdir()
    (home / "mlcycle.toml").write_text("")
    monkeypatch.chdir(home)
    model = make_pipeline(StandardScaler(), Ridge()).fit(frame, target)
    with Workspace.open(Settings(home=home, actor="ana")) as workspace:
        workspace.registry.register("abc", model, input_example=frame[:4])
    cli = CliRunner()
    exported = cli.invoke(app, ["models", "export", "abc/1", str(tmp_path / "out")])
    assert exported.exit_code == 0, exported.output
    assert "exported models:/abc/1" in exported.stdout
    (tmp_path / "rows.json").write_text(frame.to_json(orient="split", index=False))
    output = run_in_mlflow(
        mlflow_python,
        f"""
        import json, os
        os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
        import mlflow.pyfunc, pandas as pd
        model = mlflow.pyfunc.load_model({str(tmp_path / "out")!r})
        rows = pd.DataFrame(**json.load(open({str(tmp_path / "rows.json")!r})))
        print(json.dumps(model.predict(rows).tolist()))
        """,
    )
    np.testing.assert_allclose(json.loads(output.strip().splitlines()[-1]), model.predict(frame))
    # Back in: a pickled MLflow model needs --trust, then it is skops and loads without trust.
    save_in_mlflow(mlflow_python, tmp_path / "pickled", "pickle", model)
    refused = cli.invoke(app, ["models", "import", "abc", str(tmp_path / "pickled")])
    assert refused.exit_code == 1
    assert "stored with pickle" in refused.stderr
    imported = cli.invoke(
        app, ["models", "import", "abc", str(tmp_path / "pickled"), "--trust", "--json"]
    )
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.stdout)["flavor"] == "sklearn"
    with Workspace.open(Settings(home=home, actor="bo")) as workspace:
        assert [v.version for v in workspace.registry.versions("abc")] == [1, 2]
        version = workspace.registry.get("abc/2")
        assert version.tags["mlcycle.imported_from"] == "mlflow:pickled"
        back = workspace.registry.load("abc/2")  # skops now: no trust needed
        np.testing.assert_allclose(back.predict(frame), model.predict(frame))
        with pytest.raises(ValidationFailed, match="is not an MLflow model directory"):
            workspace.registry.import_mlflow("abc", tmp_path)
        assert len(workspace.registry.versions("abc")) == 2  # nothing registered on refusal
