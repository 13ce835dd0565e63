"""ONNX conversion: tree ensembles in float64 match scikit-learn; what cannot match is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from mlcycle.errors import ValidationFailed
from mlcycle.registry import OnnxFlavor, convert_to_onnx, flavor_for


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    data = pd.DataFrame(rng.normal(size=(400, 6)) * 100, columns=[f"x{i}" for i in range(6)])
    data.iloc[::13, 2] = np.nan
    return data


@pytest.fixture(scope="module")
def target(frame: pd.DataFrame) -> np.ndarray:
    filled = frame.fillna(0.0)
    return np.asarray(filled["x0"] * 0.3 + np.sin(filled["x1"] / 50) * 40 + filled["x2"] ** 2 / 1e3)


def reload(model: object, tmp_path: Path) -> object:
    flavor = OnnxFlavor()
    assert flavor_for(model).name == "onnx"
    assert flavor.handles(model)
    flavor.save(model, tmp_path / "m.onnx")
    return flavor.load(tmp_path / "m.onnx")


REGRESSORS = {
    "hist_gradient_boosting": lambda: HistGradientBoostingRegressor(max_iter=60, random_state=0),
    "gradient_boosting": lambda: GradientBoostingRegressor(n_estimators=60, random_state=0),
    "random_forest": lambda: RandomForestRegressor(n_estimators=15, random_state=0),
    "scaled_hist_gradient_boosting": lambda: make_pipeline(
        StandardScaler(), HistGradientBoostingRegressor(max_iter=30, random_state=0)
    ),
    "linear": LinearRegression,
}


@pytest.mark.parametrize("kind", sorted(REGRESSORS))
def test_regressors_convert_with_the_same_predictions(
    kind: str, frame: pd.DataFrame, target: np.ndarray, tmp_path: Path
) -> None:
    data = frame if "hist" in kind else frame.fillna(0.0)
    model = REGRESSORS[kind]().fit(data, target)
    converted = convert_to_onnx(model, data[:5], check=data)
    session = reload(converted, tmp_path)
    got = OnnxFlavor().predict(session, data)
    np.testing.assert_allclose(got, model.predict(data), rtol=1e-12, atol=1e-9)
    recorded = {entry.key: float(entry.value) for entry in converted.metadata_props}
    assert recorded["mlcycle.max_abs_diff"] <= 1e-9


CLASSIFIERS = {
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(max_iter=30, random_state=0),
    "gradient_boosting": lambda: GradientBoostingClassifier(n_estimators=30, random_state=0),
    "random_forest": lambda: RandomForestClassifier(n_estimators=10, random_state=0),
    "logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression()),
}


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("kind", sorted(CLASSIFIERS))
def test_classifiers_convert_with_the_same_labels_and_probabilities(
    kind: str, classes: int, frame: pd.DataFrame, target: np.ndarray, tmp_path: Path
) -> None:
    data = frame if "hist" in kind else frame.fillna(0.0)
    names = np.array(["low", "mid", "high"])[:classes]
    labels = names[np.digitize(target, np.quantile(target, np.linspace(0, 1, classes + 1)[1:-1]))]
    model = CLASSIFIERS[kind]().fit(data, labels)
    session = reload(convert_to_onnx(model, data, check=data), tmp_path)
    outputs = dict(
        zip(["label", "probabilities"], session.run(None, {"X": data.to_numpy()}), strict=True)
    )  # type: ignore[attr-defined]
    np.testing.assert_allclose(outputs["probabilities"], model.predict_proba(data), atol=1e-12)
    np.testing.assert_array_equal(OnnxFlavor().predict(session, data), model.predict(data))


def test_a_threshold_between_float32_values_does_not_flip(tmp_path: Path) -> None:
    base = np.float64(np.float32(1.0))
    column = np.array([base, np.nextafter(np.float32(1.0), np.float32(2.0))], dtype=np.float64)
    data = pd.DataFrame({"x": np.repeat(column, 20)})
    target = np.repeat([0.0, 1.0], 20)
    model = HistGradientBoostingRegressor(max_iter=5, min_samples_leaf=2).fit(data, target)
    between = pd.DataFrame({"x": [base + 5e-8, base + 6e-8, base]})
    session = reload(convert_to_onnx(model, between), tmp_path)
    np.testing.assert_array_equal(OnnxFlavor().predict(session, between), model.predict(between))


def test_categorical_splits_are_refused_with_the_reason(tmp_path: Path) -> None:
    data = pd.DataFrame({"kind": np.tile([0.0, 1.0, 2.0, 3.0], 50), "x": np.arange(200.0)})
    model = HistGradientBoostingRegressor(max_iter=5, categorical_features=[0])
    model.fit(data, data["kind"] * 3)
    with pytest.raises(ValidationFailed, match="categorical splits"):
        convert_to_onnx(model, data)


def test_a_non_identity_link_is_refused(frame: pd.DataFrame, target: np.ndarray) -> None:
    model = HistGradientBoostingRegressor(max_iter=5, loss="poisson").fit(frame, np.abs(target))
    with pytest.raises(ValidationFailed, match="LogLink"):
        convert_to_onnx(model, frame)


def test_a_model_onnx_runtime_cannot_run_is_refused(
    frame: pd.DataFrame, target: np.ndarray
) -> None:
    model = SVR().fit(frame.fillna(0.0), target)
    with pytest.raises(ValidationFailed, match="SVR cannot be converted to ONNX"):
        convert_to_onnx(model, frame.fillna(0.0))


def test_text_columns_are_refused() -> None:
    data = pd.DataFrame({"x": ["a", "b"]})
    with pytest.raises(ValidationFailed, match="numeric input columns"):
        convert_to_onnx(LinearRegression(), data)
