"""Micro-batching under real concurrency: no batch over the limit, every caller its own rows."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.serve.conftest import ListSink, LiveServer, live_server, rows

from mlcycle.workspace import Workspace

pytestmark = pytest.mark.anyio
LIMIT = 4


@pytest.fixture
def sink() -> ListSink:
    return ListSink()


@pytest.fixture
def live(workspace: Workspace, echo: str, sink: ListSink) -> Iterator[LiveServer]:
    yield from live_server(workspace, echo, sink=sink, max_batch_size=LIMIT, max_batch_wait_ms=5)


async def test_concurrent_requests_each_get_exactly_their_own_rows(
    live: LiveServer, sink: ListSink
) -> None:
    # Idle pooled connections are dropped after 1 s, before uvicorn's 5 s keep-alive
    # closes them: a request sent on a connection the server is closing gets a reset.
    limits = httpx.Limits(max_connections=64, keepalive_expiry=1.0)
    async with httpx.AsyncClient(base_url=live.url, limits=limits, timeout=60) as client:

        async def ask(ids: list[int]) -> httpx.Response:
            return await client.post("/v1/models/echo:predict", json={"instances": rows(*ids)})

        requests = [[n] for n in range(1, 150)] + [list(range(1000, 1010))]
        bad = client.post("/v1/models/echo:predict", json={"instances": [{"id": "x", "x": 0}]})
        *answers, refused = await asyncio.gather(*(ask(ids) for ids in requests), bad)
        scraped = (await client.get("/metrics")).text
    for ids, answer in zip(requests, answers, strict=True):
        assert answer.status_code == 200, answer.text
        assert np.round(answer.json()["predictions"]).astype(int).tolist() == ids
    assert refused.status_code == 422
    failed = [batch for batch in sink.batches if batch.error is not None]
    assert len(failed) == 1, "the refused request is logged as one failure row"
    answered = [batch for batch in sink.batches if batch.error is None]
    assert answered, "every predict call reaches the sink"
    calls = {
        sample.name + sample.labels.get("le", ""): sample.value
        for family in text_string_to_metric_families(scraped)
        if family.name == "mlcycle_serve_batch_rows"
        for sample in family.samples
    }
    bucket = "mlcycle_serve_batch_rows_bucket"
    assert calls[f"{bucket}{float(LIMIT)}"] == calls[f"{bucket}+Inf"], "no call over the limit"
    assert calls["mlcycle_serve_batch_rows_sum"] == 159, "every row predicted once"
    logged = sorted(round(value) for batch in answered for value in batch.outputs)
    assert logged == sorted(i for ids in requests for i in ids)
    for batch in answered:
        assert [round(v) for v in batch.inputs["id"]] == [round(v) for v in batch.outputs]
    # The large request, predicted in parts, is logged whole, in one batch, in order.
    (big,) = [
        [(index, round(value)) for index, value in zip(b.row_indexes, b.inputs["id"], strict=True)]
        for b in answered
        if max(b.inputs["id"]) >= 1000
    ]
    assert [pair for pair in big if pair[1] >= 1000] == [(i, 1000 + i) for i in range(10)]
