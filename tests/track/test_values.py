"""Metric values, steps and keys are checked where they are logged."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcycle.errors import ValidationFailed
from mlcycle.track._values import check_name, metric_step, metric_value, text_values


@pytest.mark.parametrize(
    "value", [1, 2.5, np.float32(0.5), np.float64(1.5), np.int64(3), math.nan, math.inf, -math.inf]
)
def test_numbers_are_accepted(value: object) -> None:
    result = metric_value("rmse", value)
    assert isinstance(result, float)
    assert result == float(value) or (math.isnan(result) and math.isnan(float(value)))  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["3.2", None, True, False, [1.0], np.bool_(True)])
def test_non_numbers_raise_type_error_naming_the_key(value: object) -> None:
    with pytest.raises(TypeError, match="metric 'val/rmse' must be a number"):
        metric_value("val/rmse", value)


@given(st.floats(allow_nan=False))
def test_floats_come_back_unchanged(value: float) -> None:
    assert metric_value("m", value) == value


def test_steps_must_be_integers() -> None:
    assert metric_step("m", np.int64(4)) == 4
    for bad in [1.5, True, "3"]:
        with pytest.raises(TypeError, match="step of metric 'm' must be an int"):
            metric_step("m", bad)


def test_params_and_tags_become_text() -> None:
    assert text_values({"lr": 0.1, "layers": 3, "name": "gbm"}, kind="param") == {
        "lr": "0.1",
        "layers": "3",
        "name": "gbm",
    }
    assert text_values(None, kind="tag") == {}
    with pytest.raises(ValidationFailed, match="param 'lr' is None"):
        text_values({"lr": None}, kind="param")
    with pytest.raises(ValidationFailed, match="invalid param key 'a!'"):
        text_values({"a!": 1}, kind="param")
    with pytest.raises(TypeError, match="dict of name to value"):
        text_values(["lr"], kind="param")  # type: ignore[arg-type]


def test_names_are_checked() -> None:
    assert check_name("bike-demand", what="experiment") == "bike-demand"
    with pytest.raises(ValidationFailed, match="experiment name '' must be non-empty"):
        check_name("", what="experiment")
    with pytest.raises(ValidationFailed, match="use at most 256"):
        check_name("x" * 300, what="run")
