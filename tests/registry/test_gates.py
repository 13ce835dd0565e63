"""Validation gates on real models: Bike Sharing for regression, an Adult sample for slices."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder
from threadpoolctl import threadpool_limits

from mlcycle.datasets import BIKE_SHARING_HOURLY
from mlcycle.errors import GateFailed, ValidationFailed
from mlcycle.registry import (
    ColumnSpec,
    Evaluation,
    GateInputs,
    GateResult,
    LoadedModel,
    Signature,
    SklearnFlavor,
    evaluate_gates,
)
from mlcycle.settings import GateSettings, MetricBound, Settings, SliceGate
from mlcycle.track import Split
from mlcycle.workspace import Workspace

ADULT_SAMPLE = Path(__file__).parent / "data" / "adult_sample.csv"
BIKE_FEATURES = ["season", "yr", "mnth", "hr", "holiday", "weekday", "workingday"]
BIKE_FEATURES += ["weathersit", "temp", "atemp", "hum", "windspeed"]
ADULT_CATEGORICAL = ["workclass", "education", "marital_status", "occupation", "relationship"]
ADULT_CATEGORICAL += ["race", "sex", "native_country"]
ADULT_NUMERIC = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
CUT = "2012-09-01"


def signature_of(frame: pd.DataFrame) -> Signature:
    """The signature a registration infers: each column's logical type, in order."""

    def kind(series: pd.Series[Any]) -> str:
        if pd.api.types.is_bool_dtype(series):
            return "bool"
        if pd.api.types.is_integer_dtype(series):
            return "int64"
        if pd.api.types.is_float_dtype(series):
            return "float64"
        return "string"

    inputs = tuple(
        ColumnSpec(str(name), kind(frame[name]), bool(frame[name].isna().any())) for name in frame
    )
    return Signature(inputs=inputs, outputs=(ColumnSpec("prediction", "float64"),))


def loaded(model: Any, features: pd.DataFrame) -> LoadedModel:
    return LoadedModel(model=model, flavor=SklearnFlavor(), signature=signature_of(features))


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Any:
    """Fit and predict on one thread: the tests share two cores with other processes."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def bike() -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = pd.read_csv(BIKE_SHARING_HOURLY)
    frame["dteday"] = pd.to_datetime(frame["dteday"])
    before = frame["dteday"] < CUT
    return frame[before].reset_index(drop=True), frame[~before].reset_index(drop=True)


@pytest.fixture(scope="module")
def bike_split(bike: tuple[pd.DataFrame, pd.DataFrame]) -> Split:
    train, _ = bike
    return Split(
        dataset="data:/bike/1",
        time_column="dteday",
        train_until="2012-08-31T00:00:00",
        test_from="2012-09-01T00:00:00",
        time_kind="datetime",
        train_rows=len(train),
    )


@pytest.fixture(scope="module")
def gbm(bike: tuple[pd.DataFrame, pd.DataFrame]) -> LoadedModel:
    train, _ = bike
    model = HistGradientBoostingRegressor(max_iter=100, random_state=0)
    model.fit(train[BIKE_FEATURES], train["cnt"])
    return loaded(model, train[BIKE_FEATURES])


@pytest.fixture(scope="module")
def ridge(bike: tuple[pd.DataFrame, pd.DataFrame]) -> LoadedModel:
    train, _ = bike
    model = Ridge().fit(train[BIKE_FEATURES], train["cnt"])
    return loaded(model, train[BIKE_FEATURES])


def bike_inputs(
    bike: tuple[pd.DataFrame, pd.DataFrame],
    candidate: LoadedModel,
    split: Split | None,
    **changes: Any,
) -> GateInputs:
    train, test = bike
    settings = changes.pop("settings", GateSettings(target="cnt"))
    return GateInputs(
        candidate,
        test,
        settings=settings,
        split=split,
        train=train,
        size_bytes=changes.pop("size_bytes", 2_000_000),
        latency_samples=changes.pop("latency_samples", 20),
        importance=changes.pop("importance", False),
        **changes,
    )


@pytest.fixture(scope="module")
def demo_evaluation(
    bike: tuple[pd.DataFrame, pd.DataFrame],
    gbm: LoadedModel,
    ridge: LoadedModel,
    bike_split: Split,
) -> Evaluation:
    settings = GateSettings(
        target="cnt",
        thresholds={"rmse": MetricBound(max=90.0), "r2": MetricBound(min=0.7)},
        regression_tolerance=0.02,
        baseline="dummy",
        baseline_margin=0.2,
        slices=(SliceGate(column="workingday", metrics={"r2": MetricBound(min=0.6)}),),
        max_latency_p99_ms=500.0,
        max_size_mb=50.0,
    )
    inputs = bike_inputs(
        bike,
        gbm,
        bike_split,
        settings=settings,
        production=ridge,
        denied_columns={"casual"},
        importance=True,
    )
    return evaluate_gates(inputs)


def test_bike_gbm_passes_every_gate(demo_evaluation: Evaluation) -> None:
    evaluation = demo_evaluation
    assert evaluation.passed, evaluation.summary()
    assert evaluation.task == "regression"
    assert evaluation.primary_metric == "rmse"
    assert [result.name for result in evaluation.results] == [
        "threshold.rmse.max",
        "threshold.r2.min",
        "disjoint_test",
        "finite_predictions",
        "no_regression",
        "beats_baseline",
        "slice.workingday.r2",
        "latency_p99",
        "model_size",
        "signature_compatible",
        "no_denied_columns",
    ]
    assert not any(result.skipped for result in evaluation.results)
    assert evaluation.metrics["rmse"] < evaluation.compared["production"]["rmse"]
    assert evaluation.metrics["rmse"] < evaluation.compared["baseline"]["rmse"]
    assert 0 < evaluation.metrics["latency_p99_ms"] < 500
    assert {item.value for item in evaluation.slices} == {"0", "1"}
    permutation = evaluation.importance["permutation"]
    assert max(permutation, key=permutation.__getitem__) == "hr"
    assert set(evaluation.importance["shap"]) == set(BIKE_FEATURES)
    assert evaluation.summary().startswith("all 11 gates passed on 2,888 test rows")


def test_evaluation_round_trips_through_json(demo_evaluation: Evaluation) -> None:
    stored = json.loads(json.dumps(demo_evaluation.to_dict()))
    again = Evaluation.from_dict(stored)
    assert again.to_dict() == demo_evaluation.to_dict()
    assert again.passed
    assert stored["passed"] is True
    with pytest.raises(ValidationFailed, match="not a stored gate evaluation"):
        Evaluation.from_dict({"task": "regression"})


def test_a_metric_over_its_threshold_fails_naming_it(
    bike: tuple[pd.DataFrame, pd.DataFrame], ridge: LoadedModel, bike_split: Split
) -> None:
    settings = GateSettings(
        target="cnt",
        thresholds={"rmse": MetricBound(max=60.0), "roc_auc": MetricBound(min=0.9)},
        baseline=None,
    )
    evaluation = evaluate_gates(bike_inputs(bike, ridge, bike_split, settings=settings))
    rmse = evaluation.result("threshold.rmse.max")
    assert not rmse.passed
    assert rmse.limit == 60.0
    assert rmse.measured is not None
    assert rmse.measured > 60
    assert f"rmse {rmse.measured:.4g} > max 60" == rmse.detail
    assert "roc_auc was not measured" in evaluation.result("threshold.roc_auc.min").detail
    assert "FAILED threshold.rmse.max" in evaluation.summary()
    refusal = evaluation.refusal("promotion of bike-demand/2 to production")
    assert isinstance(refusal, GateFailed)
    assert refusal.results["passed"] is False


def test_test_rows_seen_in_training_fail_the_split_gate(
    bike: tuple[pd.DataFrame, pd.DataFrame], gbm: LoadedModel, bike_split: Split
) -> None:
    train, test = bike
    leaky = pd.concat([test, train.tail(100)], ignore_index=True)
    inputs = bike_inputs((train, leaky), gbm, bike_split, settings=GateSettings(target="cnt"))
    result = evaluate_gates(inputs).result("disjoint_test")
    assert not result.passed
    assert result.measured == 100
    assert result.detail.startswith("100 of the 2,988 test rows were training rows of data:/bike/1")


def test_the_split_gate_needs_a_recorded_split(
    bike: tuple[pd.DataFrame, pd.DataFrame], gbm: LoadedModel
) -> None:
    missing = evaluate_gates(bike_inputs(bike, gbm, None)).result("disjoint_test")
    assert not missing.passed
    assert "recorded no split" in missing.detail
    off = GateSettings(target="cnt", require_disjoint_test=False)
    skipped = evaluate_gates(bike_inputs(bike, gbm, None, settings=off)).result("disjoint_test")
    assert skipped.passed
    assert skipped.skipped


def test_a_split_logged_by_the_training_run_is_checked(
    tmp_path: Path, bike: tuple[pd.DataFrame, pd.DataFrame], gbm: LoadedModel
) -> None:
    train, test = bike
    with Workspace.open(Settings(home=tmp_path, actor="tester")) as workspace:
        with workspace.start_run("bike-demand") as run:
            run.log_split("bike/1", train, test, key=["dteday", "hr"])
        split = Split.from_run(workspace.get_run(run.id), artifacts=workspace.artifacts)
    assert evaluate_gates(bike_inputs(bike, gbm, split)).result("disjoint_test").passed
    leaky = pd.concat([test.iloc[:500], train.iloc[:7]], ignore_index=True)
    result = evaluate_gates(bike_inputs((train, leaky), gbm, split)).result("disjoint_test")
    assert (result.passed, result.measured) == (False, 7)
    assert "(split by keys)" in result.detail


def test_a_candidate_worse_than_production_fails(
    bike: tuple[pd.DataFrame, pd.DataFrame],
    gbm: LoadedModel,
    ridge: LoadedModel,
    bike_split: Split,
) -> None:
    evaluation = evaluate_gates(bike_inputs(bike, ridge, bike_split, production=gbm))
    result = evaluation.result("no_regression")
    assert not result.passed
    assert result.detail.startswith("rmse ")
    assert "vs production" in result.detail
    assert evaluation.compared["production"]["rmse"] < evaluation.metrics["rmse"]
    alone = evaluate_gates(bike_inputs(bike, ridge, bike_split)).result("no_regression")
    assert alone.skipped
    assert alone.detail == "no production version to compare with"
    off = GateSettings.model_validate({"target": "cnt", "regression_tolerance": False})
    turned_off = evaluate_gates(bike_inputs(bike, ridge, bike_split, settings=off, production=gbm))
    assert turned_off.result("no_regression").skipped


def test_the_baseline_gate_fails_a_model_no_better_than_the_mean(
    bike: tuple[pd.DataFrame, pd.DataFrame], bike_split: Split
) -> None:
    train, _ = bike
    mean = loaded(DummyRegressor().fit(train[BIKE_FEATURES], train["cnt"]), train[BIKE_FEATURES])
    result = evaluate_gates(bike_inputs(bike, mean, bike_split)).result("beats_baseline")
    assert not result.passed
    assert "vs dummy baseline" in result.detail
    no_train = GateInputs(mean, bike[1], settings=GateSettings(target="cnt"), split=bike_split)
    assert "no training rows" in evaluate_gates(no_train).result("beats_baseline").detail
    off = GateSettings.model_validate({"target": "cnt", "baseline": False})
    assert (
        evaluate_gates(bike_inputs(bike, mean, bike_split, settings=off))
        .result("beats_baseline")
        .skipped
    )


def test_a_linear_baseline_is_beaten_by_the_gbm_not_by_ridge(
    bike: tuple[pd.DataFrame, pd.DataFrame],
    gbm: LoadedModel,
    ridge: LoadedModel,
    bike_split: Split,
) -> None:
    settings = GateSettings(target="cnt", baseline="linear", baseline_margin=0.05)
    strong = evaluate_gates(bike_inputs(bike, gbm, bike_split, settings=settings))
    assert strong.result("beats_baseline").passed
    weak = evaluate_gates(bike_inputs(bike, ridge, bike_split, settings=settings))
    assert not weak.result("beats_baseline").passed
    assert "vs linear baseline" in weak.result("beats_baseline").detail


class HolesRegressor(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """A regressor that predicts NaN for every tenth row (a broken feature transform)."""

    def fit(self, features: pd.DataFrame, target: pd.Series[Any]) -> HolesRegressor:
        self.inner_ = HistGradientBoostingRegressor(max_iter=20).fit(features, target)
        return self

    def predict(self, features: pd.DataFrame) -> np.ndarray[Any, Any]:
        found: np.ndarray[Any, Any] = self.inner_.predict(features)
        found[::10] = np.nan
        return found


def test_nan_predictions_fail(bike: tuple[pd.DataFrame, pd.DataFrame], bike_split: Split) -> None:
    train, _test = bike
    holes = loaded(HolesRegressor().fit(train[BIKE_FEATURES], train["cnt"]), train)
    holes = loaded(holes.model, train[BIKE_FEATURES])
    evaluation = evaluate_gates(bike_inputs(bike, holes, bike_split))
    result = evaluation.result("finite_predictions")
    assert not result.passed
    assert result.detail == "289 of 2,888 predictions are NaN, infinite or missing"
    assert np.isfinite(evaluation.metrics["rmse"])  # scored on the finite rows


def test_latency_and_size_budgets(
    bike: tuple[pd.DataFrame, pd.DataFrame], gbm: LoadedModel, bike_split: Split
) -> None:
    settings = GateSettings(target="cnt", max_latency_p99_ms=1e-6, max_size_mb=1.0)
    evaluation = evaluate_gates(
        bike_inputs(bike, gbm, bike_split, settings=settings, size_bytes=3 * 1024 * 1024)
    )
    latency, size = evaluation.result("latency_p99"), evaluation.result("model_size")
    assert not latency.passed
    assert "ms > 1e-06 ms" in latency.detail
    assert not size.passed
    assert size.detail == "size 3 MiB > 1 MiB"
    unmeasured = bike_inputs(bike, gbm, bike_split, settings=settings, latency_samples=0)
    unmeasured = GateInputs(**{**unmeasured.__dict__, "size_bytes": None})
    again = evaluate_gates(unmeasured)
    assert "not measured" in again.result("latency_p99").detail
    assert "size is unknown" in again.result("model_size").detail
    defaults = evaluate_gates(bike_inputs(bike, gbm, bike_split))
    assert defaults.result("latency_p99").skipped
    assert defaults.result("model_size").skipped


def test_a_signature_that_drops_a_column_fails_naming_it(
    bike: tuple[pd.DataFrame, pd.DataFrame], gbm: LoadedModel, bike_split: Split
) -> None:
    train, _ = bike
    fewer = [name for name in BIKE_FEATURES if name != "hum"]
    model = HistGradientBoostingRegressor(max_iter=50, random_state=0)
    candidate = loaded(model.fit(train[fewer], train["cnt"]), train[fewer])
    result = evaluate_gates(bike_inputs(bike, candidate, bike_split, production=gbm)).result(
        "signature_compatible"
    )
    assert not result.passed
    assert result.detail == "removes input column(s) production takes: hum"
    retyped = train[BIKE_FEATURES].astype({"season": str})
    encode = ColumnTransformer([("season", OrdinalEncoder(), ["season"])], remainder="passthrough")
    strings = make_pipeline(encode, Ridge()).fit(retyped, train["cnt"])
    test = bike[1].astype({"season": str})
    changed = evaluate_gates(
        bike_inputs((train, test), loaded(strings, retyped), bike_split, production=gbm)
    ).result("signature_compatible")
    assert not changed.passed
    assert changed.detail == "changes the type of: season (int64 -> string)"
    assert (
        "no production"
        in evaluate_gates(bike_inputs(bike, gbm, bike_split)).result("signature_compatible").detail
    )


def test_a_denied_column_among_the_features_fails(
    bike: tuple[pd.DataFrame, pd.DataFrame], gbm: LoadedModel, bike_split: Split
) -> None:
    evaluation = evaluate_gates(bike_inputs(bike, gbm, bike_split, denied_columns={"Wind-Speed"}))
    result = evaluation.result("no_denied_columns")
    assert not result.passed
    assert result.detail.startswith("feature(s) windspeed were flagged by the data policy")
    off = GateSettings(target="cnt", deny_policy_columns=False)
    names = [
        r.name for r in evaluate_gates(bike_inputs(bike, gbm, bike_split, settings=off)).results
    ]
    assert "no_denied_columns" not in names


def test_bad_inputs_are_refused_with_the_fix(
    bike: tuple[pd.DataFrame, pd.DataFrame], gbm: LoadedModel
) -> None:
    _, test = bike
    with pytest.raises(ValidationFailed, match="need the label column"):
        evaluate_gates(GateInputs(gbm, test))
    with pytest.raises(ValidationFailed, match="no target column 'count'"):
        evaluate_gates(GateInputs(gbm, test, target="count"))
    with pytest.raises(ValidationFailed, match=r"lacks the model's input column\(s\) \['hum'\]"):
        evaluate_gates(GateInputs(gbm, test.drop(columns="hum"), target="cnt"))
    with pytest.raises(ValidationFailed, match="'accuracy' is not a regression metric"):
        evaluate_gates(
            GateInputs(gbm, test, target="cnt", settings=GateSettings(primary_metric="accuracy"))
        )


def test_gate_settings_read_false_as_off() -> None:
    settings = GateSettings.model_validate({"baseline": False, "regression_tolerance": False})
    assert settings.baseline is None
    assert settings.regression_tolerance is None
    assert GateSettings().baseline == "dummy"


@pytest.fixture(scope="module")
def adult() -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = pd.read_csv(ADULT_SAMPLE)
    train = frame[frame["split"] == "train"].reset_index(drop=True)
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    return train, test


@pytest.fixture(scope="module")
def adult_model(adult: tuple[pd.DataFrame, pd.DataFrame]) -> LoadedModel:
    train, _ = adult
    features = train[ADULT_NUMERIC + ADULT_CATEGORICAL]
    encode = ColumnTransformer(
        [("categories", OneHotEncoder(handle_unknown="ignore"), ADULT_CATEGORICAL)],
        remainder="passthrough",
        sparse_threshold=0.0,
    )
    model = make_pipeline(encode, HistGradientBoostingClassifier(max_iter=60, random_state=0))
    return loaded(model.fit(features, train["income"]), features)


def adult_inputs(
    adult: tuple[pd.DataFrame, pd.DataFrame],
    model: LoadedModel,
    settings: GateSettings,
    *,
    importance: bool = False,
) -> GateInputs:
    train, test = adult
    split = Split(dataset="data:/adult/1", key=("row_id",), train_rows=len(train))
    from mlcycle.track._split import key_digests

    split = Split.from_dict(split.to_dict(), train_keys=np.unique(key_digests(train, ["row_id"])))
    return GateInputs(
        model,
        test,
        settings=settings,
        split=split,
        train=train,
        latency_samples=5,
        importance=importance,
    )


def test_classification_slices_by_sex(
    adult: tuple[pd.DataFrame, pd.DataFrame], adult_model: LoadedModel
) -> None:
    settings = GateSettings(
        target="income",
        thresholds={"accuracy": MetricBound(min=0.8), "roc_auc": MetricBound(min=0.85)},
        slices=(
            SliceGate(
                column="sex",
                metrics={"accuracy": MetricBound(min=0.75), "recall": MetricBound(min=0.3)},
                max_gap={"accuracy": 0.15},
            ),
            SliceGate(column="race", metrics={"accuracy": MetricBound(min=0.5)}, min_rows=60),
        ),
    )
    evaluation = evaluate_gates(adult_inputs(adult, adult_model, settings, importance=True))
    assert evaluation.passed, evaluation.summary()
    assert evaluation.task == "classification"
    assert evaluation.primary_metric == "accuracy"
    assert set(evaluation.metrics) >= {"accuracy", "precision", "recall", "f1", "roc_auc"}
    by_sex = {item.value: item for item in evaluation.slices if item.column == "sex"}
    assert by_sex["Male"].rows + by_sex["Female"].rows == 1000
    assert by_sex["Female"].metrics["accuracy"] > by_sex["Male"].metrics["accuracy"]
    race = evaluation.result("slice.race.accuracy")
    assert "not judged, under 60 rows" in race.detail
    assert not {item.judged for item in evaluation.slices if item.value == "Other"} - {False}
    assert evaluation.result("slice.sex.accuracy.gap").measured is not None
    assert "sex_Male" in " ".join(evaluation.importance.get("shap", {})) or evaluation.notes


def test_a_slice_below_its_bound_fails_naming_the_slice(
    adult: tuple[pd.DataFrame, pd.DataFrame], adult_model: LoadedModel
) -> None:
    measure = GateSettings(target="income", slices=(SliceGate(column="sex"),))
    found = evaluate_gates(adult_inputs(adult, adult_model, measure)).slices
    recall = {item.value: item.metrics["recall"] for item in found}
    worse, better = sorted(recall, key=recall.__getitem__)
    bound = (recall[worse] + recall[better]) / 2
    settings = GateSettings(
        target="income",
        positive_label=">50K",
        slices=(
            SliceGate(
                column="sex",
                metrics={"recall": MetricBound(min=bound)},
                max_gap={"recall": 0.001},
            ),
            SliceGate(column="nationality"),
        ),
    )
    evaluation = evaluate_gates(adult_inputs(adult, adult_model, settings))
    result = evaluation.result("slice.sex.recall")
    assert not result.passed
    assert result.detail == f"sex={worse}: recall {recall[worse]:.4g} < min {bound:g}"
    assert result.measured == recall[worse]
    gap = evaluation.result("slice.sex.recall.gap")
    assert not gap.passed
    assert gap.detail.startswith(f"recall gap by sex {recall[better] - recall[worse]:.4g}")
    missing = evaluation.result("slice.nationality")
    assert missing.detail == "the test data has no column 'nationality' to slice by"


def test_permutation_importance_covers_any_model_and_shap_skips_non_trees(
    bike: tuple[pd.DataFrame, pd.DataFrame], ridge: LoadedModel, bike_split: Split
) -> None:
    evaluation = evaluate_gates(bike_inputs(bike, ridge, bike_split, importance=True))
    assert set(evaluation.importance["permutation"]) == set(BIKE_FEATURES)
    assert "shap" not in evaluation.importance
    assert "SHAP skipped: Ridge is not a tree model" in evaluation.notes


def test_a_full_evaluation_of_the_demo_model_is_quick(
    bike: tuple[pd.DataFrame, pd.DataFrame], gbm: LoadedModel, bike_split: Split
) -> None:
    started = time.perf_counter()
    inputs = bike_inputs(bike, gbm, bike_split, latency_samples=100, importance=True)
    evaluation = evaluate_gates(inputs)
    assert time.perf_counter() - started < 120  # a guard against hanging, not a benchmark
    assert evaluation.duration_s > 0


finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
results = st.builds(
    GateResult,
    name=st.text(min_size=1, max_size=20),
    passed=st.booleans(),
    detail=st.text(max_size=40),
    measured=st.none() | finite,
    limit=st.none() | finite,
    skipped=st.booleans(),
)


@hypothesis_settings(max_examples=60, deadline=None)
@given(st.lists(results, max_size=6), st.dictionaries(st.text(max_size=8), finite, max_size=4))
def test_any_evaluation_round_trips(gates: list[GateResult], metrics: dict[str, float]) -> None:
    evaluation = Evaluation(
        "classification", "income", "accuracy", 10, tuple(gates), metrics=metrics
    )
    stored = json.loads(json.dumps(evaluation.to_dict()))
    assert Evaluation.from_dict(stored) == evaluation
    assert stored["passed"] is all(gate.passed for gate in gates)
