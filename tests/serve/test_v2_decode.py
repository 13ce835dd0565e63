"""The v2 tensor decoder: shapes, nested data and value kinds, and no pandas on the way."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from tests.serve.conftest import live_server

from mlcycle.errors import ValidationFailed
from mlcycle.registry._signature import ColumnSpec
from mlcycle.serve._errors import MalformedRequest
from mlcycle.serve._rows import Schema
from mlcycle.serve._v2 import _decode_tensors, decode_inputs, plain_numbers
from mlcycle.workspace import Workspace

SCHEMA = Schema(
    inputs=(ColumnSpec("hr", "int64"), ColumnSpec("temp", "float64")),
    max_rows=100,
)


def tensor(name: str, shape: Any, data: Any, datatype: str = "FP64") -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def test_one_row_of_named_columns() -> None:
    rows = decode_inputs(
        {"inputs": [tensor("hr", [1], [8], "INT64"), tensor("temp", [1], [0.3])]}, b"", SCHEMA
    )
    assert rows.matrix is not None
    assert rows.matrix.tolist() == [[8.0, 0.3]]


def test_columns_of_several_rows_and_nested_data() -> None:
    rows = decode_inputs(
        {
            "inputs": [
                tensor("hr", [3, 1], [[1], [2], [3]], "INT64"),
                tensor("temp", [3], [0.1, 0.2, 0.3]),
            ]
        },
        b"",
        SCHEMA,
    )
    assert rows.matrix is not None
    np.testing.assert_allclose(rows.matrix, [[1, 0.1], [2, 0.2], [3, 0.3]])


def test_one_2d_tensor() -> None:
    rows = decode_inputs({"inputs": [tensor("x", [2, 2], [[1, 0.5], [2, 0.25]])]}, b"", SCHEMA)
    assert rows.matrix is not None
    assert rows.matrix.tolist() == [[1.0, 0.5], [2.0, 0.25]]


@pytest.mark.parametrize("shape", [[-1], [True], "1", [1, "a"], [1, -1], None, [1.0]])
def test_a_shape_that_is_not_a_list_of_sizes_is_refused(shape: Any) -> None:
    request = {"inputs": [tensor("hr", shape, [8], "INT64"), tensor("temp", [1], [0.3])]}
    with pytest.raises(MalformedRequest, match="input 'hr': \"shape\" must be a list of sizes"):
        decode_inputs(request, b"", SCHEMA)


@pytest.mark.parametrize(
    ("data", "shape", "message"),
    [
        (["8"], [1], r"input 'hr' \(INT64\): value 0 is '8', not a number"),
        ([1, "x"], [2], r"input 'hr' \(INT64\): value 1 is 'x', not a number"),
        ([1, 2], [1], r"shape \[1\] holds 1 values, but data has 2"),
        ([], [1], r"shape \[1\] holds 1 values, but data has 0"),
    ],
)
def test_values_that_do_not_fit_are_named(data: Any, shape: list[int], message: str) -> None:
    request = {
        "inputs": [tensor("hr", shape, data, "INT64"), tensor("temp", shape, [0.3] * shape[0])]
    }
    with pytest.raises(ValidationFailed, match=message):
        decode_inputs(request, b"", SCHEMA)


def test_a_bool_tensor_takes_only_booleans() -> None:
    schema = Schema(inputs=(ColumnSpec("flag", "bool"),), max_rows=10)
    with pytest.raises(ValidationFailed, match=r"value 0 is 1, not true or false"):
        decode_inputs({"inputs": [tensor("flag", [1], [1], "BOOL")]}, b"", schema)
    rows = decode_inputs({"inputs": [tensor("flag", [2], [True, False], "BOOL")]}, b"", schema)
    assert rows.count == 2


@pytest.mark.parametrize(("datatype", "data"), [("BYTES", [["1", "2"]]), ("BOOL", [[True, False]])])
def test_a_single_2d_tensor_must_be_of_numbers(datatype: str, data: Any) -> None:
    request = {"inputs": [tensor("x", [1, 2], data, datatype)]}
    with pytest.raises(ValidationFailed, match=f"must hold numbers, not {datatype}"):
        decode_inputs(request, b"", SCHEMA)


@pytest.mark.parametrize("kind", ["string", "category", "datetime"])
def test_a_binary_number_tensor_is_refused_for_a_text_column(kind: str) -> None:
    schema = Schema(inputs=(ColumnSpec("when", kind),), max_rows=10)
    request = {
        "inputs": [
            {
                "name": "when",
                "shape": [1],
                "datatype": "INT64",
                "parameters": {"binary_data_size": 8},
            }
        ]
    }
    with pytest.raises(ValidationFailed, match=r"column 'when': expected .*got a tensor of int64"):
        decode_inputs(request, np.int64(7).tobytes(), schema)


def test_a_numeric_onnx_model_is_answered_without_pandas(
    bike_models: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = live_server(bike_models, "models:/bike-demand@production")
    live = next(served)
    try:
        (lane,) = live.server.routes.answering
        assert lane.model.runtime == "onnx"

        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError("a DataFrame was built on the request path")

        monkeypatch.setattr(pd.DataFrame, "__init__", refuse)
        row = {"station": 2, "hr": 8, "temp": 0.5}
        v1 = httpx.post(
            f"{live.url}/v1/models/bike-demand:predict", json={"instances": [row]}, timeout=30
        )
        v2 = httpx.post(
            f"{live.url}/v2/models/bike-demand/infer",
            json={
                "inputs": [
                    tensor("station", [1], [2], "INT64"),
                    tensor("hr", [1], [8], "INT64"),
                    tensor("temp", [1], [0.5]),
                ]
            },
            timeout=30,
        )
        monkeypatch.undo()
        assert v1.status_code == 200, v1.text
        assert v2.status_code == 200, v2.text
        assert v1.json()["predictions"][0] == pytest.approx(40 * 0.5 + 3 * 8 + 2, abs=1.0)
        assert v2.json()["outputs"][0]["data"] == pytest.approx(v1.json()["predictions"])
    finally:
        served.close()


_VALUES = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.5, 2.0, True, None, "3", [1.0]]),
)


@st.composite
def everyday_or_nearly(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A request of one 1-D tensor per input, often with one thing wrong."""
    count = draw(st.integers(0, 70))
    inputs = [
        {
            "name": name,
            "shape": [count],
            "datatype": draw(st.sampled_from(["FP64", "INT64", "FP32", "INT8"])),
            "data": draw(st.lists(_VALUES, min_size=count, max_size=count))
            if draw(st.booleans())
            else [1] * count,
        }
        for name in ("hr", "temp", "hum")
    ]
    mistake = draw(
        st.sampled_from(["none", "datatype", "shape", "name", "twice", "params", "gone"])
    )
    victim = inputs[draw(st.integers(0, len(inputs) - 1))]
    if mistake == "datatype":
        victim["datatype"] = draw(st.sampled_from(["BOOL", "BYTES", "FP128", None]))
    elif mistake == "shape":
        victim["shape"] = draw(st.sampled_from([[True], [count + 1], [count, 1], [], "1", [-1]]))
    elif mistake == "name":
        victim["name"] = draw(st.sampled_from(["other", 7, None, ["hr"]]))
    elif mistake == "twice":
        inputs.append(dict(victim))
    elif mistake == "params":
        victim["parameters"] = {"content_type": "np"}
    elif mistake == "gone":
        inputs.remove(victim)
    return inputs


@given(everyday_or_nearly())
@settings(max_examples=400, deadline=None)
def test_the_everyday_path_agrees_with_the_general_one(inputs: list[dict[str, Any]]) -> None:
    """Whatever the fast path takes, the general path decodes the same; it refuses no less."""
    schema = Schema(
        inputs=(
            ColumnSpec("hr", "int64"),
            ColumnSpec("temp", "float64"),
            ColumnSpec("hum", "float64", nullable=True),
        ),
        max_rows=100,
    )
    plain = plain_numbers(inputs, schema)
    event("fast path" if plain is not None else "general path")
    try:
        general = _decode_tensors(inputs, b"", schema)
    except (ValidationFailed, MalformedRequest):
        assert plain is None
        return
    if plain is not None:
        assert general.matrix is not None
        assert plain.count == general.count
        assert plain.matrix is not None
        assert plain.matrix.flags.c_contiguous
        np.testing.assert_array_equal(plain.matrix, general.matrix)


def test_a_row_of_plain_numbers_takes_the_everyday_path() -> None:
    inputs = [tensor("hr", [1], [7], "INT64"), tensor("temp", [1], [0.25])]
    rows = plain_numbers(inputs, SCHEMA)
    assert rows is not None
    assert rows.matrix is not None
    assert rows.matrix.tolist() == [[7.0, 0.25]]
    two = plain_numbers([tensor("temp", [2], [0.5, 1]), tensor("hr", [2], [1, 2.0])], SCHEMA)
    assert two is not None
    assert two.matrix is not None
    assert two.matrix.tolist() == [[1.0, 0.5], [2.0, 1.0]]
