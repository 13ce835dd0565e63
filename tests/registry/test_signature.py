"""Signatures inferred from input examples: names, logical types, nulls and the output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcycle.errors import ValidationFailed
from mlcycle.registry import Signature, infer_signature


def test_frame_columns_get_logical_types() -> None:
    example = pd.DataFrame(
        {
            "b": [True, False],
            "i": pd.array([1, None], dtype="Int64"),
            "f": [0.5, 1.5],
            "s": ["a", "b"],
            "t": pd.to_datetime(["2011-01-01", "2011-01-02"]),
            "c": pd.Categorical(["x", "y"]),
        }
    )
    signature = infer_signature(example, np.array([1, 2]))
    assert [(c.name, c.type, c.nullable) for c in signature.inputs] == [
        ("b", "bool", False),
        ("i", "int64", True),
        ("f", "float64", False),
        ("s", "string", False),
        ("t", "datetime", False),
        ("c", "category", False),
    ]
    assert [(c.name, c.type, c.shape) for c in signature.outputs] == [("prediction", "int64", None)]


def test_arrays_are_named_by_position_and_tensor_outputs_keep_their_shape() -> None:
    signature = infer_signature(np.zeros((3, 2)), np.array([[0.1, 0.9]] * 3))
    assert signature.input_names == ["0", "1"]
    assert signature.outputs[0].shape == (2,)
    assert infer_signature(np.arange(3)).input_names == ["0"]
    assert infer_signature(pd.Series([1.0], name="x")).input_names == ["x"]
    assert infer_signature(np.zeros(2)).outputs == ()
    nan_output = infer_signature(np.zeros((2, 1)), np.array([np.nan, 1.0]))
    assert nan_output.outputs[0].nullable


def test_other_examples_are_refused_with_their_type() -> None:
    with pytest.raises(ValidationFailed, match=r"not a builtins\.list"):
        infer_signature([[1, 2]])
    with pytest.raises(ValidationFailed, match="1 or 2 dimensions"):
        infer_signature(np.zeros((1, 2, 3)))


@given(st.lists(st.sampled_from(["int64", "float64", "bool", "object"]), min_size=1, max_size=5))
def test_signatures_round_trip_through_json(dtypes: list[str]) -> None:
    example = pd.DataFrame({f"c{i}": pd.Series([1, 0], dtype=d) for i, d in enumerate(dtypes)})
    signature = infer_signature(example, np.array([0.0, 1.0]))
    assert Signature.from_dict(signature.to_dict()) == signature
    assert signature.input_names == list(example.columns)
