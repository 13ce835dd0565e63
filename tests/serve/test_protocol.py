"""The v1 and Open Inference Protocol v2 endpoints, checked with a real v2 client."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as triton
from tests.serve.conftest import LiveServer, client_for, live_server, rows
from tritonclient.utils import InferenceServerException

from mlcycle.workspace import Workspace

pytestmark = pytest.mark.anyio


@pytest.fixture
def live(workspace: Workspace, echo: str) -> Iterator[LiveServer]:
    yield from live_server(workspace, echo)


async def test_v1_predict_answers_each_row_with_who_answered(
    workspace: Workspace, echo: str
) -> None:
    async with client_for(workspace, echo) as (client, _):
        answer = await client.post("/v1/models/echo:predict", json={"instances": rows(3, 4)})
    assert answer.status_code == 200
    body = answer.json()
    assert np.round(body["predictions"]).tolist() == [3.0, 4.0]
    assert (body["model"], body["version"], body["variant"]) == ("echo", 1, "primary")
    assert answer.headers["x-variant"] == "primary"


async def test_v2_takes_one_input_per_column_or_one_matrix(workspace: Workspace, echo: str) -> None:
    columns = {
        "inputs": [
            {"name": "id", "shape": [2], "datatype": "FP64", "data": [7, 8]},
            {"name": "x", "shape": [2, 1], "datatype": "FP32", "data": [[0.1], [0.2]]},
        ],
        "id": "mine",
    }
    matrix = {"inputs": [{"name": "X", "shape": [2, 2], "datatype": "FP64", "data": [9, 0, 10, 0]}]}
    async with client_for(workspace, echo) as (client, _):
        by_column = await client.post("/v2/models/echo/infer", json=columns)
        by_matrix = await client.post("/v2/models/echo/versions/1/infer", json=matrix)
    assert by_column.status_code == 200, by_column.text
    out = by_column.json()
    assert out["id"] == "mine"
    assert out["model_name"] == "echo"
    assert out["model_version"] == "1"
    assert out["outputs"][0]["shape"] == [2]
    assert out["outputs"][0]["datatype"] == "FP64"
    assert np.round(out["outputs"][0]["data"]).tolist() == [7.0, 8.0]
    assert np.round(by_matrix.json()["outputs"][0]["data"]).tolist() == [9.0, 10.0]


@pytest.mark.parametrize("count", [1, 16, 17, 40])  # up to 16 rows are checked as one table
async def test_v2_columns_answer_as_v1_records(workspace: Workspace, echo: str, count: int) -> None:
    ids = list(range(count))
    columns = {
        "inputs": [
            {"name": "x", "shape": [count], "datatype": "FP64", "data": [0.5] * count},
            {"name": "id", "shape": [count], "datatype": "INT64", "data": ids},
        ]
    }
    async with client_for(workspace, echo) as (client, _):
        by_column = await client.post("/v2/models/echo/infer", json=columns)
        by_record = await client.post("/v1/models/echo:predict", json={"instances": rows(*ids)})
    assert by_column.status_code == 200, by_column.text
    assert np.round(by_column.json()["outputs"][0]["data"]).tolist() == ids
    assert np.round(by_record.json()["predictions"]).tolist() == ids


async def test_prediction_paths_match_as_starlette_routes_would(
    workspace: Workspace, echo: str
) -> None:
    """POSTs to the prediction routes skip Starlette; every other request still reaches it."""
    v2 = {"inputs": [{"name": "X", "shape": [1, 2], "datatype": "FP64", "data": [5, 0]}]}
    async with client_for(workspace, echo) as (client, _):
        versioned = await client.post("/v2/models/echo/versions/1/infer", json=v2)
        wrong_version = await client.post("/v2/models/echo/versions/9/infer", json=v2)
        no_version = await client.post("/v2/models/echo/versions//infer", json=v2)
        nested = await client.post("/v2/models/a/b/infer", json=v2)
        deeper = await client.post("/v2/models/echo/versions/1/x/infer", json=v2)
        v1_nested = await client.post("/v1/models/a/b:predict", json={"instances": rows(1)})
        v1_empty = await client.post("/v1/models/:predict", json={"instances": rows(1)})
        get_infer = await client.get("/v2/models/echo/infer")
        get_predict = await client.get("/v1/models/echo:predict")
    assert versioned.status_code == 200, versioned.text
    assert np.round(versioned.json()["outputs"][0]["data"]).tolist() == [5.0]
    assert wrong_version.status_code == 404
    assert "serves no version '9'" in wrong_version.json()["error"]
    for unrouted in (no_version, nested, deeper, v1_nested, v1_empty):  # Starlette's own 404
        assert (unrouted.status_code, unrouted.text) == (404, "Not Found"), unrouted.request.url
    assert (get_infer.status_code, get_predict.status_code) == (405, 405)


async def test_health_metadata_and_versions(workspace: Workspace, echo: str) -> None:
    async with client_for(workspace, echo) as (client, _):
        live = await client.get("/v2/health/live")
        ready = await client.get("/v2/health/ready")
        meta = await client.get("/v2/models/echo")
        version = await client.get("/v2/models/echo/versions/1/ready")
        missing = await client.get("/v2/models/echo/versions/7")
        other = await client.get("/v2/models/nope")
        server = await client.get("/v2")
    assert live.json() == {"live": True}
    assert ready.json() == {"ready": True}
    assert [i["name"] for i in meta.json()["inputs"]] == ["id", "x"]
    assert meta.json()["versions"] == ["1"]
    assert meta.json()["platform"] == "onnxruntime_onnx"
    assert version.json() == {"name": "echo", "ready": True}
    assert missing.status_code == 404
    assert "serves no version '7'" in missing.json()["error"]
    assert other.status_code == 404
    assert "this server serves 'echo'" in other.json()["error"]
    assert server.json()["extensions"] == ["binary_tensor_data"]


async def test_openapi_and_an_offline_docs_page(workspace: Workspace, echo: str) -> None:
    async with client_for(workspace, echo) as (client, _):
        spec = await client.get("/openapi.json")
        page = await client.get("/docs")
    assert "/v2/models/{name}/infer" in spec.json()["paths"]
    assert page.status_code == 200
    assert "/v1/models/{name}:predict" in page.text
    assert "http" not in page.text.split("<script", 1)[1].split("</script>")[0].split('"')[0]
    assert "cdn" not in page.text.lower()
    assert "<script src" not in page.text


def test_the_triton_client_infers_in_json_and_binary(live: LiveServer) -> None:
    client = triton.InferenceServerClient(live.url.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("echo")
    assert [i["name"] for i in client.get_model_metadata("echo")["inputs"]] == ["id", "x"]
    for binary in (False, True):
        ids = triton.InferInput("id", [3], "FP64")
        ids.set_data_from_numpy(np.array([1.0, 2.0, 3.0]), binary_data=binary)
        xs = triton.InferInput("x", [3], "FP64")
        xs.set_data_from_numpy(np.array([0.0, 0.5, 1.0]), binary_data=binary)
        wanted = triton.InferRequestedOutput("prediction", binary_data=binary)
        result = client.infer("echo", [ids, xs], outputs=[wanted])
        np.testing.assert_allclose(result.as_numpy("prediction"), [1.0, 2.0, 3.0], atol=1e-9)


def test_the_triton_client_gets_errors_as_the_protocol_says(live: LiveServer) -> None:
    client = triton.InferenceServerClient(live.url.removeprefix("http://"))
    ids = triton.InferInput("id", [1], "FP64")
    ids.set_data_from_numpy(np.array([1.0]), binary_data=False)
    with pytest.raises(InferenceServerException, match="missing input 'x'"):
        client.infer("echo", [ids])
    with pytest.raises(InferenceServerException, match="no model 'other' here"):
        client.infer("other", [ids])
