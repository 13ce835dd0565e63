"""Each flavor round-trips its models with equal predictions and refuses what it must."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.svm import SVR
from tests.registry.custom_models import Doubler

from mlcycle.errors import Untrusted, ValidationFailed
from mlcycle.registry import (
    LightGBMFlavor,
    OnnxFlavor,
    PyfuncFlavor,
    SklearnFlavor,
    XGBoostFlavor,
    flavor_for,
    get_flavor,
    known_flavors,
)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    data = pd.DataFrame(rng.normal(size=(200, 4)), columns=["a", "b", "c", "d"])
    data["a"] = data["a"].where(rng.random(200) > 0.05)
    return data


@pytest.fixture(scope="module")
def target(frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(frame["b"] * 3 + frame["c"].abs())


def round_trip(flavor: object, model: object, path: Path, **load: object) -> object:
    assert flavor.handles(model)  # type: ignore[attr-defined]
    flavor.save(model, path)  # type: ignore[attr-defined]
    return flavor.load(path, **load)  # type: ignore[attr-defined]


def test_flavor_order_puts_specific_formats_first_and_pyfunc_last() -> None:
    names = [flavor.name for flavor in known_flavors()]
    assert names[:4] == ["xgboost", "lightgbm", "sklearn", "onnx"]
    assert names[-1] == "pyfunc"
    assert get_flavor("pyfunc").safe is False
    assert all(flavor.safe for flavor in known_flavors() if flavor.name != "pyfunc")


def test_each_model_goes_to_its_own_flavor(frame: pd.DataFrame, target: np.ndarray) -> None:
    import lightgbm
    import xgboost

    filled = frame.fillna(0.0)
    assert flavor_for(xgboost.XGBRegressor(n_estimators=2).fit(filled, target)).name == "xgboost"
    assert flavor_for(lightgbm.LGBMRegressor(n_estimators=2, verbose=-1)).name == "lightgbm"
    assert flavor_for(Ridge()).name == "sklearn"
    with pytest.raises(ValidationFailed, match=r"no safe flavor.*flavor='pyfunc' stores it with"):
        flavor_for(Doubler(1.0))  # pickle only when asked for by name


def test_an_object_no_flavor_supports_lists_the_flavors() -> None:
    with pytest.raises(ValidationFailed, match=r"builtins\.str.*xgboost, lightgbm, sklearn, onnx"):
        flavor_for("not a model")
    with pytest.raises(ValidationFailed, match="no model flavor 'torch'"):
        get_flavor("torch")


PIPELINES = {
    "column transformer": lambda: make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["a", "b", "c"]),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["kind"]),
            ]
        ),
        Ridge(),
    ),
    "histogram boosting": lambda: HistGradientBoostingRegressor(max_iter=20),
    "neighbours": lambda: make_pipeline(SimpleImputer(), KNeighborsRegressor()),
    "svm": lambda: make_pipeline(SimpleImputer(), SVR()),
    "log target": lambda: make_pipeline(
        SimpleImputer(), FunctionTransformer(np.abs), FunctionTransformer(np.log1p), Ridge()
    ),
}


@pytest.mark.parametrize("kind", sorted(PIPELINES))
def test_sklearn_pipelines_round_trip_through_the_allow_list(
    kind: str, frame: pd.DataFrame, target: np.ndarray, tmp_path: Path
) -> None:
    data = frame.assign(c=frame["c"].abs())
    if kind == "column transformer":
        data["kind"] = np.where(frame["d"] > 0, "x", "y")
    model = PIPELINES[kind]().fit(data, target)
    back = round_trip(SklearnFlavor(), model, tmp_path / "m.skops")
    np.testing.assert_array_equal(back.predict(data), model.predict(data))  # type: ignore[attr-defined]


def test_a_classifier_forest_round_trips(frame: pd.DataFrame, tmp_path: Path) -> None:
    labels = np.where(frame["b"] > 0, "up", "down")
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(frame, labels)
    back = round_trip(SklearnFlavor(), model, tmp_path / "m.skops")
    np.testing.assert_array_equal(back.predict_proba(frame), model.predict_proba(frame))  # type: ignore[attr-defined]


def test_a_skops_file_with_an_untrusted_type_is_refused_by_name(tmp_path: Path) -> None:
    model = make_pipeline(FunctionTransformer(np.linalg.norm), LogisticRegression())
    path = tmp_path / "m.skops"
    skops.io.dump(model, path, compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(Untrusted, match=r"numpy\.linalg\.norm.*registry\.trusted_types"):
        SklearnFlavor().load(path)
    back = SklearnFlavor().load(path, trusted_types=["numpy.linalg.norm"])
    assert type(back).__name__ == "Pipeline"


def test_a_file_that_is_not_skops_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.skops"
    path.write_bytes(b"not a zip")
    with pytest.raises(ValidationFailed, match="not a readable skops file"):
        SklearnFlavor().load(path)


@pytest.mark.parametrize("wrapper", ["XGBRegressor", "XGBClassifier", "Booster"])
def test_xgboost_models_round_trip_natively(
    wrapper: str, frame: pd.DataFrame, target: np.ndarray, tmp_path: Path
) -> None:
    import xgboost

    if wrapper == "Booster":
        model: object = xgboost.train({}, xgboost.DMatrix(frame, target), num_boost_round=5)
    elif wrapper == "XGBClassifier":
        model = xgboost.XGBClassifier(n_estimators=5).fit(frame, (target > 1).astype(int))
    else:
        model = xgboost.XGBRegressor(n_estimators=5).fit(frame, target)
    flavor = XGBoostFlavor()
    back = round_trip(flavor, model, tmp_path / "m.xgb.zip")
    assert type(back) is type(model)
    np.testing.assert_array_equal(flavor.predict(back, frame), flavor.predict(model, frame))
    with zipfile.ZipFile(tmp_path / "m.xgb.zip") as archive:
        assert sorted(archive.namelist()) == ["mlcycle.json", "model.ubj"]


@pytest.mark.parametrize("wrapper", ["LGBMRegressor", "LGBMClassifier", "Booster"])
def test_lightgbm_models_round_trip_natively(
    wrapper: str, frame: pd.DataFrame, target: np.ndarray, tmp_path: Path
) -> None:
    import lightgbm

    labels = np.where(target > 1, "high", np.where(target > 0, "mid", "low"))
    if wrapper == "Booster":
        train = lightgbm.Dataset(frame, target)
        model: object = lightgbm.train({"verbose": -1}, train, num_boost_round=5)
    elif wrapper == "LGBMClassifier":
        model = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(frame, labels)
    else:
        model = lightgbm.LGBMRegressor(n_estimators=5, verbose=-1).fit(frame, target)
    flavor = LightGBMFlavor()
    back = round_trip(flavor, model, tmp_path / "m.lgb.zip")
    assert type(back) is type(model)
    np.testing.assert_array_equal(flavor.predict(back, frame), flavor.predict(model, frame))
    if wrapper == "LGBMClassifier":
        np.testing.assert_array_equal(back.predict_proba(frame), model.predict_proba(frame))  # type: ignore[attr-defined]


@pytest.mark.parametrize("flavor", [XGBoostFlavor(), LightGBMFlavor()], ids=lambda f: f.name)
def test_booster_files_that_are_not_ours_are_refused(flavor: object, tmp_path: Path) -> None:
    path = tmp_path / "m.zip"
    path.write_bytes(b"junk")
    with pytest.raises(ValidationFailed, match="not a model file written by mlcycle"):
        flavor.load(path)  # type: ignore[attr-defined]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.ubj", b"x")
        archive.writestr("model.txt", b"x")
        archive.writestr("mlcycle.json", '{"class": "os.system"}')
    with pytest.raises(ValidationFailed, match="unknown"):
        flavor.load(path)  # type: ignore[attr-defined]


def test_pyfunc_round_trips_an_importable_class(frame: pd.DataFrame, tmp_path: Path) -> None:
    flavor = PyfuncFlavor()
    back = round_trip(flavor, Doubler(0.5), tmp_path / "m.pkl")
    np.testing.assert_array_equal(flavor.predict(back, frame), Doubler(0.5).predict(frame))


def test_pyfunc_refuses_classes_it_could_not_import_back(tmp_path: Path) -> None:
    main_class = type("InMain", (), {"__module__": "__main__", "predict": lambda self, x: x})

    class Local:
        def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
            return frame

    with pytest.raises(ValidationFailed, match="InMain is defined in __main__"):
        PyfuncFlavor().save(main_class(), tmp_path / "m.pkl")
    with pytest.raises(ValidationFailed, match="defined inside a function"):
        PyfuncFlavor().save(Local(), tmp_path / "m.pkl")
    assert not (tmp_path / "m.pkl").exists()


def test_pyfunc_refuses_a_file_that_does_not_unpickle(tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    path.write_bytes(b"junk")
    with pytest.raises(ValidationFailed, match="cannot be unpickled"):
        PyfuncFlavor().load(path)


@settings(max_examples=20, deadline=None)
@given(offset=st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_pyfunc_round_trip_keeps_the_state(offset: float) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        back = round_trip(PyfuncFlavor(), Doubler(offset), Path(folder) / "m.pkl")
    assert back.offset == offset  # type: ignore[attr-defined]


def test_onnx_flavor_refuses_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"junk")
    with pytest.raises(ValidationFailed, match="not an ONNX model"):
        OnnxFlavor().load(path)
