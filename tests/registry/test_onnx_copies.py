"""ONNX copies made at registration, loaded with ``runtime="onnx"``, and why a model has none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from mlcycle.errors import NotFound
from mlcycle.registry import OnnxFlavor, convert_to_onnx
from mlcycle.settings import RegistrySettings, Settings
from mlcycle.workspace import Workspace


def test_a_tree_ensemble_gets_an_onnx_copy_with_the_same_predictions(
    workspace: Workspace, frame: pd.DataFrame, target: np.ndarray
) -> None:
    model = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(frame, target)
    version = workspace.registry.register("trees", model, input_example=frame.head(5))
    assert version.tags["mlcycle.onnx"].startswith("converted (max abs diff")
    assert set(version.files) == {"input_example", "onnx"}
    native = workspace.registry.load("trees")
    served = workspace.registry.load("models:/trees/1", runtime="onnx")
    assert isinstance(served.flavor, OnnxFlavor)
    assert served.signature == native.signature
    np.testing.assert_allclose(served.predict(frame), native.predict(frame), rtol=1e-5, atol=1e-6)


def test_a_model_that_cannot_be_converted_says_why(
    workspace: Workspace, frame: pd.DataFrame, target: np.ndarray
) -> None:
    text = frame.assign(hr=frame["hr"].map(lambda hour: f"h{hour}"))
    encode = ColumnTransformer([("hr", OneHotEncoder(handle_unknown="ignore"), ["hr"])])
    model = make_pipeline(encode, Ridge()).fit(text, target)
    version = workspace.registry.register("text", model, input_example=text.head(5))
    assert version.tags["mlcycle.onnx"].startswith("not converted: ONNX conversion needs numeric")
    assert "onnx" not in version.files
    with pytest.raises(NotFound, match=r"models:/text/1 has no ONNX copy \(not converted: ONNX"):
        workspace.registry.load("text", runtime="onnx")
    np.testing.assert_allclose(workspace.registry.load("text").predict(text), model.predict(text))


def test_conversion_can_be_turned_off(
    tmp_path: Path, frame: pd.DataFrame, target: np.ndarray
) -> None:
    settings = Settings(home=tmp_path, registry=RegistrySettings(convert_onnx=False))
    with Workspace.open(settings) as workspace:
        version = workspace.registry.register(
            "plain", Ridge().fit(frame, target), input_example=frame
        )
        assert "onnx" not in version.files
        assert "mlcycle.onnx" not in version.tags


def test_an_onnx_model_registers_with_an_input_example(
    workspace: Workspace, frame: pd.DataFrame, target: np.ndarray
) -> None:
    model = HistGradientBoostingRegressor(max_iter=10, random_state=0).fit(frame, target)
    version = workspace.registry.register(
        "converted", convert_to_onnx(model, frame.head(5)), input_example=frame.head(5)
    )
    assert version.flavor == "onnx"
    assert version.signature["outputs"]
    loaded = workspace.registry.load(version.ref)
    np.testing.assert_allclose(loaded.predict(frame), model.predict(frame), rtol=1e-5, atol=1e-6)
