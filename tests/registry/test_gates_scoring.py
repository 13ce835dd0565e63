"""Metric computation the gates rely on: tasks, positive labels, several classes, slices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlcycle.errors import ValidationFailed
from mlcycle.registry import ColumnSpec, LoadedModel, Signature, SklearnFlavor
from mlcycle.registry._importance import shap_importance
from mlcycle.registry._scoring import compute_metrics, infer_task
from mlcycle.registry._slices import slice_gates, slice_metrics
from mlcycle.settings import MetricBound, SliceGate


def test_three_classes_use_macro_averages_and_one_vs_rest_auc() -> None:
    truth = np.array(["a", "b", "c", "a", "b", "c"])
    predicted = np.array(["a", "b", "b", "a", "c", "c"])
    scores = np.array([[0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.1, 0.6, 0.3]] * 2)
    found = compute_metrics(
        "classification", truth, predicted, scores=scores, classes=["a", "b", "c"]
    )
    assert found["accuracy"] == pytest.approx(4 / 6)
    assert found["recall"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert 0 <= found["roc_auc"] <= 1
    assert compute_metrics("classification", truth[:0], predicted[:0]) == {}


def test_the_positive_label_is_configurable_and_checked() -> None:
    truth, predicted = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])
    assert compute_metrics("classification", truth, predicted, positive=1)["recall"] == 0.5
    assert compute_metrics("classification", truth, predicted, positive="0")["recall"] == 1.0
    with pytest.raises(ValidationFailed, match="positive_label 'yes' is not one of the classes"):
        compute_metrics("classification", truth, predicted, positive="yes")


def test_the_task_is_inferred_from_model_and_target() -> None:
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    signature = Signature((ColumnSpec("x", "float64"),), ())
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, [0, 1, 0, 1])
    classifier = LoadedModel(model, SklearnFlavor(), signature)
    plain = LoadedModel(StandardScaler().fit(frame), SklearnFlavor(), signature)
    assert infer_task(classifier, pd.Series([1.5, 2.5])) == "classification"
    assert infer_task(plain, pd.Series([True, False])) == "classification"
    assert infer_task(plain, pd.Series([0, 1, 1])) == "classification"
    assert infer_task(plain, pd.Series([3, 40, 7])) == "regression"
    found, why = shap_importance(classifier, frame)
    assert found == {}
    assert why == "SHAP skipped: Pipeline is not a tree model"


def test_slices_too_small_are_reported_not_judged() -> None:
    test = pd.DataFrame({"sex": ["F", "M", "M", None]})
    gate = SliceGate(column="sex", metrics={"r2": MetricBound(min=0.5)}, max_gap={"mae": 1.0})
    truth, predicted = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.5, 3.0, 4.0])
    found = slice_metrics(
        gate,
        test,
        task="regression",
        truth=truth,
        predicted=predicted,
        scores=None,
        classes=None,
        positive=None,
    )
    assert [(item.value, item.rows, item.judged) for item in found] == [
        ("M", 2, False),
        ("(missing)", 1, False),
        ("F", 1, False),
    ]
    bound, gap = slice_gates(gate, found)
    assert bound.skipped
    assert "not judged, under 30 rows: M (2 rows)" in bound.detail
    assert gap.skipped
    assert gap.detail.startswith("fewer than two slices of sex with mae")
