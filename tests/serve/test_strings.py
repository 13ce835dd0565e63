"""String and categorical columns over v1 and v2: JSON ``BYTES``, binary ``BYTES``, labels out."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from tests.serve.conftest import LiveServer, client_for, live_server

from mlcycle.workspace import Workspace

pytestmark = pytest.mark.anyio
CITIES = ["lisbon", "porto", "faro"]
KINDS = ["casual", "registered"]


def frame(count: int) -> pd.DataFrame:
    """Rides: a ``city`` string, a ``kind`` category and a temperature."""
    index = np.arange(count)
    return pd.DataFrame(
        {
            "city": [CITIES[i % 3] for i in index],
            "kind": pd.Categorical([KINDS[i % 2] for i in index], categories=KINDS),
            "temp": np.linspace(0, 1, count),
        }
    )


def encoder() -> ColumnTransformer:
    return ColumnTransformer(
        [("words", OneHotEncoder(handle_unknown="ignore"), ["city", "kind"])],
        remainder="passthrough",
    )


@pytest.fixture
def rides(workspace: Workspace) -> pd.DataFrame:
    """``rides/1`` predicts a count from words; ``busy/1`` answers a label, a string."""
    train = frame(60)
    target = train["city"].map({"lisbon": 100.0, "porto": 50.0, "faro": 10.0}) + 5 * (
        train["kind"] == "registered"
    )
    count = Pipeline([("encode", encoder()), ("fit", LinearRegression())]).fit(train, target)
    label = Pipeline([("encode", encoder()), ("fit", LogisticRegression())])
    label.fit(train, np.where(target > 40, "busy", "quiet"))
    workspace.registry.register("rides", count, input_example=train.head(5))
    workspace.registry.register("busy", label, input_example=train.head(5))
    return train


def expected(rides: pd.DataFrame, rows: pd.DataFrame) -> list[float]:
    target = rows["city"].map({"lisbon": 100.0, "porto": 50.0, "faro": 10.0})
    return (target + 5 * (rows["kind"] == "registered")).tolist()


def v2_columns(rows: pd.DataFrame) -> dict[str, object]:
    count = len(rows)
    return {
        "inputs": [
            {"name": "city", "shape": [count], "datatype": "BYTES", "data": list(rows["city"])},
            {"name": "kind", "shape": [count], "datatype": "BYTES", "data": list(rows["kind"])},
            {"name": "temp", "shape": [count], "datatype": "FP64", "data": list(rows["temp"])},
        ]
    }


async def test_words_in_and_numbers_out_over_v1_and_v2(
    workspace: Workspace, rides: pd.DataFrame
) -> None:
    asked = frame(7)
    records = [
        {"city": r.city, "kind": r.kind, "temp": r.temp} for r in asked.itertuples(index=False)
    ]
    async with client_for(workspace, "models:/rides/1") as (client, server):
        v1 = await client.post("/v1/models/rides:predict", json={"instances": records})
        v2 = await client.post("/v2/models/rides/infer", json=v2_columns(asked))
        meta = await client.get("/v2/models/rides")
        runtime = server.routes.answering[0].model.runtime
    assert v1.status_code == 200, v1.text
    assert v2.status_code == 200, v2.text
    np.testing.assert_allclose(v1.json()["predictions"], expected(rides, asked), atol=1e-6)
    np.testing.assert_allclose(v2.json()["outputs"][0]["data"], expected(rides, asked), atol=1e-6)
    assert {i["name"]: i["datatype"] for i in meta.json()["inputs"]} == {
        "city": "BYTES",
        "kind": "BYTES",
        "temp": "FP64",
    }
    assert runtime == "native"


async def test_a_string_label_comes_back_as_bytes(
    workspace: Workspace, rides: pd.DataFrame
) -> None:
    del rides
    asked = frame(4)
    model = workspace.registry.load(workspace.registry.get("busy/1"))
    wanted = model.predict(asked).tolist()
    async with client_for(workspace, "models:/busy/1") as (client, _):
        v1 = await client.post(
            "/v1/models/busy:predict",
            json={
                "instances": [
                    {"city": c, "kind": k, "temp": 0.5}
                    for c, k in zip(asked["city"], asked["kind"], strict=True)
                ]
            },
        )
        v2 = await client.post(
            "/v2/models/busy/infer",
            json={**v2_columns(asked), "parameters": {"binary_data_output": True}},
        )
    assert v1.json()["predictions"] == wanted
    out = v2.json()["outputs"][0]
    assert (out["datatype"], out["shape"], out["data"]) == ("BYTES", [4], wanted)
    assert "inference-header-content-length" not in v2.headers  # strings always travel as JSON


@pytest.mark.parametrize(
    ("city", "words"),
    [
        ({"datatype": "BYTES", "data": [7]}, "input 'city' (BYTES): value 0 is 7, not a string"),
        ({"datatype": "FP64", "data": [1.5]}, "city"),
        ({"datatype": "BYTES", "data": [None]}, "city"),
    ],
)
async def test_a_string_column_refuses_what_is_not_a_string(
    workspace: Workspace, rides: pd.DataFrame, city: dict[str, object], words: str
) -> None:
    del rides
    body = v2_columns(frame(1))
    inputs = body["inputs"]
    assert isinstance(inputs, list)
    inputs[0] = {"name": "city", "shape": [1], **city}
    async with client_for(workspace, "models:/rides/1") as (client, _):
        answer = await client.post("/v2/models/rides/infer", json=body)
        wrong = await client.post(
            "/v1/models/rides:predict",
            json={"instances": [{"city": 3, "kind": "casual", "temp": 0.1}]},
        )
    assert answer.status_code == 422, answer.text
    assert words in answer.json()["error"]
    assert wrong.status_code == 422
    assert "city" in wrong.json()["error"]


@pytest.fixture
def live(workspace: Workspace, rides: pd.DataFrame) -> Iterator[LiveServer]:
    del rides
    yield from live_server(workspace, "models:/rides/1")


def test_the_triton_client_sends_strings_in_json_and_binary(
    live: LiveServer, rides: pd.DataFrame
) -> None:
    asked = frame(5)
    client = triton.InferenceServerClient(live.url.removeprefix("http://"))
    for binary in (False, True):
        city = triton.InferInput("city", [5], "BYTES")
        city.set_data_from_numpy(asked["city"].to_numpy(dtype=object), binary_data=binary)
        kind = triton.InferInput("kind", [5], "BYTES")
        kind.set_data_from_numpy(asked["kind"].to_numpy(dtype=object), binary_data=binary)
        temp = triton.InferInput("temp", [5], "FP64")
        temp.set_data_from_numpy(asked["temp"].to_numpy(), binary_data=binary)
        result = client.infer("rides", [city, kind, temp])
        np.testing.assert_allclose(result.as_numpy("prediction"), expected(rides, asked), atol=1e-6)


def test_truncated_or_miscounted_binary_strings_are_refused(live: LiveServer) -> None:
    import httpx

    def body(raw: bytes, count: int) -> tuple[bytes, dict[str, str]]:
        head = (
            b'{"inputs": [{"name": "city", "shape": [%d], "datatype": "BYTES", '
            b'"parameters": {"binary_data_size": %d}}, '
            b'{"name": "kind", "shape": [1], "datatype": "BYTES", "data": ["casual"]}, '
            b'{"name": "temp", "shape": [1], "datatype": "FP64", "data": [0.5]}]}'
        ) % (count, len(raw))
        return head + raw, {"Inference-Header-Content-Length": str(len(head))}

    porto = struct.pack("<I", 5) + b"porto"
    truncated = body(porto[:3], 1)
    two = body(porto + porto, 1)
    with httpx.Client(base_url=live.url, timeout=30) as client:
        cut = client.post("/v2/models/rides/infer", content=truncated[0], headers=truncated[1])
        more = client.post("/v2/models/rides/infer", content=two[0], headers=two[1])
        right = body(porto, 1)
        good = client.post("/v2/models/rides/infer", content=right[0], headers=right[1])
    assert cut.status_code == 400
    assert "truncated BYTES element" in cut.json()["error"]
    assert more.status_code == 422
    assert "2 strings for 1 values" in more.json()["error"]
    assert good.status_code == 200, good.text
    assert round(good.json()["outputs"][0]["data"][0]) == 50
