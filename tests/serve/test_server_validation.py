"""Bad input: every case answers 4xx JSON naming the field and the problem, never a 500."""

from __future__ import annotations

import asyncio
import gzip
import pickle
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from tests.serve.conftest import ListSink, client_for, rows, until
from tests.serve.models import FirstOnly, Planted, RaisesOnNegative

from mlcycle.errors import Untrusted
from mlcycle.serve import load_model
from mlcycle.settings import RegistrySettings, Settings
from mlcycle.workspace import Workspace

pytestmark = pytest.mark.anyio
PREDICT = "/v1/models/echo:predict"


@pytest.mark.parametrize(
    ("instances", "status", "words"),
    [
        ([{"id": 1.0}], 422, ["row 0", "missing column 'x'"]),
        ([{"id": 1.0, "x": 1.0, "y": 2}], 422, ["row 0", "unknown column 'y'"]),
        ([{"id": "seven", "x": 1.0}], 422, ["column 'id'", "expected a number", "'seven'"]),
        ([{"id": True, "x": 1.0}], 422, ["column 'id'", "the boolean True"]),
        ([{"id": None, "x": 1.0}], 422, ["column 'id'", "does not allow missing values"]),
        ([{"id": [1], "x": 1.0}], 422, ["column 'id'", "the list"]),
        ([], 422, ["no rows"]),
        ("rows", 400, ['"instances" must be a list']),
    ],
)
async def test_bad_rows_are_named(
    workspace: Workspace, echo: str, instances: object, status: int, words: list[str]
) -> None:
    sink = ListSink()
    async with client_for(workspace, echo, sink=sink) as (client, _):
        answer = await client.post(PREDICT, json={"instances": instances})
        fine = await client.post(PREDICT, json={"instances": rows(1)})
    assert answer.status_code == status, answer.text
    for word in words:
        assert word in answer.json()["error"]
    assert fine.status_code == 200
    [failed] = [batch for batch in sink.batches if batch.error is not None]  # logged for monitors
    assert failed.error == f"{status}: {answer.json()['error']}"[:500]


async def test_too_many_rows_and_too_large_bodies(workspace: Workspace, echo: str) -> None:
    async with client_for(workspace, echo, max_rows=5, max_body_bytes=2048) as (client, _):
        many = await client.post(PREDICT, json={"instances": rows(*range(6))})
        large = await client.post(PREDICT, content=b" " * 4096 + b'{"instances": []}')
        bomb = gzip.compress(b" " * 100_000)
        zipped = await client.post(PREDICT, content=bomb, headers={"content-encoding": "gzip"})
        small = gzip.compress(orjson.dumps({"instances": rows(2)}))
        fine = await client.post(PREDICT, content=small, headers={"content-encoding": "gzip"})
    assert many.status_code == 422
    assert "6 rows, over the limit of 5" in many.json()["error"]
    assert large.status_code == 413
    assert "max_body_bytes" in large.json()["error"]
    assert zipped.status_code == 413
    assert "decompressed body" in zipped.json()["error"]
    assert fine.status_code == 200


async def test_compressed_bodies_are_read_whole_or_refused(workspace: Workspace, echo: str) -> None:
    body = orjson.dumps({"instances": rows(1)})
    packed = gzip.compress(body)
    half = len(body) // 2
    gzip_headers = {"content-encoding": "gzip"}
    async with client_for(workspace, echo, max_body_bytes=4096) as (client, _):
        cut = await client.post(PREDICT, content=packed[:-8], headers=gzip_headers)
        junk = await client.post(PREDICT, content=packed + b"junk", headers=gzip_headers)
        members = gzip.compress(body[:half]) + gzip.compress(body[half:])  # concatenated files
        two = await client.post(PREDICT, content=members, headers=gzip_headers)
        bomb = gzip.compress(b" " * 3000) + gzip.compress(b" " * 3000)  # too large only together
        large = await client.post(PREDICT, content=bomb, headers=gzip_headers)
        deflated = zlib.compress(body) + b"more"
        deflate = await client.post(
            PREDICT, content=deflated, headers={"content-encoding": "deflate"}
        )
    assert cut.status_code == 400
    assert "cut short" in cut.json()["error"]
    assert junk.status_code == 400
    assert "not valid gzip data" in junk.json()["error"]
    assert two.status_code == 200
    assert two.json()["predictions"] == [1.0]
    assert large.status_code == 413
    assert deflate.status_code == 400
    assert "bytes after the end of its deflate data" in deflate.json()["error"]


async def test_a_50_mb_body_is_refused_before_it_is_read(workspace: Workspace, echo: str) -> None:
    async with client_for(workspace, echo) as (client, _):
        answer = await client.post(PREDICT, content=b"x" * (50 * 1024 * 1024))
    assert answer.status_code == 413
    assert "52,428,800 bytes" in answer.json()["error"]


async def test_malformed_json_and_other_content_types(workspace: Workspace, echo: str) -> None:
    async with client_for(workspace, echo) as (client, _):
        broken = await client.post(PREDICT, content=b'{"instances": [')
        form = await client.post(PREDICT, data={"id": "1"})
        plain = await client.post(
            PREDICT,
            content=orjson.dumps({"instances": rows(5)}),
            headers={"content-type": "text/plain"},
        )
        empty = await client.post(PREDICT, content=b"")
    assert broken.status_code == 400
    assert "not valid JSON" in broken.json()["error"]
    assert form.status_code == 400
    assert "application/x-www-form-urlencoded" in form.json()["error"]
    assert plain.status_code == 200  # the content type is not what decides: the body is
    assert empty.status_code == 400
    assert "empty" in empty.json()["error"]


@pytest.mark.parametrize(
    ("tensors", "words"),
    [
        (
            [{"name": "id", "shape": [1], "datatype": "FP64", "data": ["a"]}],
            ["'id'", "not a number"],
        ),
        ([{"name": "id", "shape": [2], "datatype": "FP64", "data": [1]}], ["shape [2]", "has 1"]),
        ([{"name": "id", "shape": [1], "datatype": "FP99", "data": [1]}], ["unknown datatype"]),
        (
            [
                {"name": "id", "shape": [1], "datatype": "FP64", "data": [1]},
                {"name": "z", "shape": [1], "datatype": "FP64", "data": [1]},
            ],
            ["unknown input 'z'"],
        ),
        (
            [
                {"name": "id", "shape": [1], "datatype": "FP64", "data": [1]},
                {"name": "x", "shape": [2], "datatype": "FP64", "data": [1, 2]},
            ],
            ["different numbers of rows"],
        ),
        ([{"name": "X", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}], ["[rows, 2]"]),
        (
            [
                {"name": "id", "shape": [1], "datatype": "FP64", "data": [None]},
                {"name": "x", "shape": [1], "datatype": "FP64", "data": [0.5]},
            ],
            ["column 'id'", "does not allow missing values"],
        ),
        (
            [
                {"name": "id", "shape": [1], "datatype": "BYTES", "data": ["seven"]},
                {"name": "x", "shape": [1], "datatype": "FP64", "data": [0.5]},
            ],
            ["column 'id'", "expected a number", "'seven'"],
        ),
        (
            [
                {"name": "id", "shape": [1], "datatype": "BOOL", "data": [True]},
                {"name": "x", "shape": [1], "datatype": "FP64", "data": [0.5]},
            ],
            ["column 'id'", "the boolean True"],
        ),
        (
            [
                {"name": "id", "shape": [2], "datatype": "FP64", "data": [1, 2]},
                {"name": "x", "shape": [2], "datatype": "FP64", "data": [0.5, None]},
            ],
            ["row 1", "column 'x'", "does not allow missing values"],
        ),
    ],
)
async def test_bad_tensors_are_named(
    workspace: Workspace, echo: str, tensors: list[object], words: list[str]
) -> None:
    async with client_for(workspace, echo) as (client, _):
        answer = await client.post("/v2/models/echo/infer", json={"inputs": tensors})
    assert answer.status_code == 422, answer.text
    for word in words:
        assert word in answer.json()["error"]


async def test_a_wrong_or_missing_token_is_401_but_health_is_open(
    workspace: Workspace, echo: str
) -> None:
    async with client_for(workspace, echo, token="s3cret") as (client, _):
        none = await client.post(PREDICT, json={"instances": rows(1)})
        wrong = await client.get("/metrics", headers={"authorization": "Bearer nope"})
        right = await client.post(
            PREDICT, json={"instances": rows(1)}, headers={"authorization": "Bearer s3cret"}
        )
        live = await client.get("/v2/health/live")
    assert none.status_code == 401
    assert "bearer token" in none.json()["error"]
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert live.status_code == 200


V2_ROW = {
    "inputs": [
        {"name": "id", "shape": [1], "datatype": "FP64", "data": [1.0]},
        {"name": "x", "shape": [1], "datatype": "FP64", "data": [0.5]},
    ]
}


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (PREDICT, {"instances": [{"id": "seven", "x": 1.0}]}, 422),  # against the signature
        ("/v2/models/echo/versions/9/infer", V2_ROW, 404),  # no such version
        ("/v2/models/echo/infer", {"inputs": "none"}, 400),  # before it reached the model
    ],
    ids=["wrong type", "unknown version", "malformed tensors"],
)
async def test_a_refused_request_stops_counting_as_in_flight_and_arriving(
    workspace: Workspace, echo: str, path: str, body: object, status: int
) -> None:
    # A request still counted as arriving makes every later batch wait for it
    # (serve.max_batch_wait_ms): a refusal must end its count as an answer does.
    async with client_for(workspace, echo) as (client, server):
        refused = await client.post(path, json=body)
        fine = await client.post("/v2/models/echo/infer", json=V2_ROW)
        counts = (server.inflight, server.arriving)
    assert (refused.status_code, fine.status_code) == (status, 200)
    assert counts == (0, 0)


async def test_the_callers_request_id_is_kept_on_every_path(
    workspace: Workspace, echo: str
) -> None:
    sink = ListSink()
    async with client_for(workspace, echo, sink=sink, max_inflight=1) as (client, server):
        fine = await client.post(
            PREDICT, json={"instances": rows(1)}, headers=[(b"x-request-id", "café-1".encode())]
        )
        refused = await client.post(
            PREDICT, json={"instances": [{"id": 1.0}]}, headers={"x-request-id": "client-2"}
        )
        server.admit()  # a request in flight: the limit (1) is reached
        shed = await client.post(
            PREDICT, json={"instances": rows(1)}, headers={"x-request-id": "client-3"}
        )
        server.release(arrived=True)
        too_long = await client.post(
            PREDICT, json={"instances": rows(1)}, headers={"x-request-id": "x" * 201}
        )
    assert fine.json()["request_id"] == "café-1"
    assert [refused.status_code, shed.status_code, too_long.status_code] == [422, 503, 400]
    assert refused.headers["x-request-id"] == "client-2"
    assert shed.headers["x-request-id"] == "client-3"
    assert "x-request-id is 201 characters long; give at most 200" in too_long.json()["error"]
    logged = [batch.request_ids[0] for batch in sink.batches]
    assert logged[:3] == ["café-1", "client-2", "client-3"]  # as labels will name them
    assert logged[3] == too_long.headers["x-request-id"] != "x" * 201


async def test_rows_waiting_for_a_request_go_when_it_is_refused(
    workspace: Workspace, echo: str
) -> None:
    body_ends = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b'{"instances": [{"id": "seven", '
        await body_ends.wait()
        yield b'"x": 1.0}]}'

    async with client_for(workspace, echo) as (client, server):
        [lane] = server.routes.answering
        lane.queue.max_wait_s = 600  # only the refusal, not the wait's end, lets the rows go
        headers = {"content-type": "application/json"}
        refused = asyncio.create_task(client.post(PREDICT, content=slow_body(), headers=headers))
        await until(lambda: server.arriving == 1)
        waiting = asyncio.create_task(client.post(PREDICT, json={"instances": rows(3)}))
        await until(lambda: lane.queue.queued == 1)
        await asyncio.sleep(0.05)
        assert not waiting.done(), "a request is still arriving: the rows wait for it"
        body_ends.set()
        answers = await asyncio.wait_for(asyncio.gather(refused, waiting), 30)
    assert [answer.status_code for answer in answers] == [422, 200]
    assert answers[1].json()["predictions"] == [3.0]


async def test_a_model_that_raises_answers_500_with_an_id_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        home=tmp_path, actor="ana", registry=RegistrySettings(trusted_publishers=("ana",))
    )
    with Workspace.open(settings) as workspace:
        import pandas as pd

        example = pd.DataFrame({"id": [1.0, 2.0]})
        workspace.registry.register(
            "flaky", RaisesOnNegative(), input_example=example, flavor="pyfunc"
        )
        sink = ListSink()
        async with client_for(workspace, "models:/flaky/1", sink=sink) as (client, _):
            bad = await client.post("/v1/models/flaky:predict", json={"instances": [{"id": -1.0}]})
            good = await client.post("/v1/models/flaky:predict", json={"instances": [{"id": 4.0}]})
            metrics = (await client.get("/metrics")).text
    assert bad.status_code == 500
    error_id = bad.json()["error_id"]
    assert error_id in bad.json()["error"]
    assert any(error_id in record.getMessage() for record in caplog.records)
    assert good.status_code == 200
    assert good.json()["predictions"] == [4.0]
    [failed] = [batch for batch in sink.batches if batch.error is not None]
    assert failed.error is not None
    assert failed.error.startswith(f"500: the model failed on this request (error id {error_id}")
    assert failed.request_ids == [bad.headers["x-request-id"]]
    # Counted and logged under the variant whose model failed, so A/B error rates compare.
    assert (failed.model, failed.model_version, failed.variant) == ("flaky", 1, "primary")
    assert (failed.inputs, list(failed.outputs)) == ({}, [])
    assert (
        'mlcycle_serve_errors_total{deployment="flaky",model="flaky",status="500",'
        'variant="primary",version="1"} 1.0'
    ) in metrics


async def test_a_model_that_miscounts_its_outputs_never_hands_a_request_others_rows(
    tmp_path: Path,
) -> None:
    settings = Settings(
        home=tmp_path, actor="ana", registry=RegistrySettings(trusted_publishers=("ana",))
    )
    with Workspace.open(settings) as workspace:
        import pandas as pd

        example = pd.DataFrame({"id": [1.0, 2.0]})
        workspace.registry.register("first", FirstOnly(), input_example=example, flavor="pyfunc")
        path = "/v1/models/first:predict"
        async with client_for(workspace, "models:/first/1", max_batch_wait_ms=50) as (client, _):
            singles = await asyncio.gather(
                *(client.post(path, json={"instances": [{"id": float(n)}]}) for n in range(1, 5))
            )
            pair = await client.post(path, json={"instances": [{"id": 7.0}, {"id": 8.0}]})
    # Merged, the model answers one row for four: each request is predicted again alone.
    assert [answer.json()["predictions"] for answer in singles] == [[1.0], [2.0], [3.0], [4.0]]
    assert pair.status_code == 500
    assert "error id" in pair.json()["error"]


def test_a_planted_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    proof, marker = tmp_path / "proof", tmp_path / "ran"
    pickle.loads(pickle.dumps(Planted(str(proof))))  # the payload works
    assert proof.exists()
    with Workspace.open(Settings(home=tmp_path, actor="eve")) as workspace:
        workspace.registry.register("planted", Planted(str(marker)), flavor="pyfunc")
        with pytest.raises(Untrusted, match="not trusted"):
            load_model(workspace.registry, "planted/1", max_rows=10)
    assert not marker.exists()
