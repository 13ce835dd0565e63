"""``POST /v1/models/NAME:feedback``: labels by request id, behind the token, bad input named."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from tests.serve.conftest import rows, serve_settings

from mlcycle.clock import SimulatedClock
from mlcycle.serve import FeedbackLog, ModelServer, create_app, implicit_deployment, spool_dir
from mlcycle.workspace import Workspace

TOKEN = "s3cret"
AUTH = {"authorization": f"Bearer {TOKEN}"}
FEEDBACK = "/v1/models/echo:feedback"
pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(workspace: Workspace, echo: str) -> AsyncIterator[httpx.AsyncClient]:
    """A started server for ``echo`` writing the real prediction log, with a token."""
    server = ModelServer(
        registry=workspace.registry,
        deployment=implicit_deployment(echo),
        settings=serve_settings(max_body_bytes=4096),
        sink=workspace.prediction_log(),
        events=workspace.metadata,
    )
    app = create_app(server, token=TOKEN, feedback=workspace.feedback)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as opened:
            yield opened


async def test_labels_for_answered_requests_are_stored_at_once(
    client: httpx.AsyncClient, workspace: Workspace
) -> None:
    ids = []
    for n in (1, 2):
        answer = await client.post(
            "/v1/models/echo:predict", json={"instances": rows(n, n + 10)}, headers=AUTH
        )
        ids.append(answer.json()["request_id"])
    labels = [
        {"request_id": ids[0], "label": 1.5},
        {"request_id": ids[1], "row_index": 1, "label": 12},
        {"request_id": "never-answered", "label": 3},
    ]
    answer = await client.post(FEEDBACK, json={"labels": labels}, headers=AUTH)
    assert answer.status_code == 200
    assert answer.json() == {"recorded": 3, "unknown_request_ids": ["never-answered"]}
    table = workspace.feedback.labelled("echo")
    got = {(r["request_id"], r["row_index"]): r["label"] for r in table.to_pylist()}
    assert got == {(ids[0], 0): 1.5, (ids[0], 1): None, (ids[1], 0): None, (ids[1], 1): 12.0}


@pytest.mark.parametrize(
    ("body", "status", "problem"),
    [
        (b"{not json", 400, "the body is not valid JSON"),
        (b'{"labels": {}}', 422, 'the body must be {"labels"'),
        (b"[1, 2]", 422, 'the body must be {"labels"'),
        (b'{"labels": [{"label": 1}]}', 422, 'labels[0] is {"label":1}; each label needs'),
        (b'{"labels": [{"request_id": "a", "label": 1, "weight": 2}]}', 422, "['weight']"),
        (b'{"labels": []}', 422, "no labels given"),
        (b'{"labels": [{"request_id": 7, "label": 1}]}', 422, "request_id must be a non-empty"),
        (b'{"labels": [{"request_id": "a", "label": null}]}', 422, "a number, a boolean or"),
        (b'{"labels": [{"request_id": "a", "label": 1, "row_index": -2}]}', 422, "row_index"),
        (b'{"labels": [{"request_id": "a", "label": 1, "row_index": 2147483648}]}', 422, "0 to"),
        (b'{"labels": [{"request_id": "a", "label": 1}, {"request_id": "b", "label": "x"}]}',
         422, "mix numbers and strings"),
        (b'{"labels": "' + b"x" * 5000 + b'"}', 413, "over the limit of 4,096"),
    ],
)  # fmt: skip
async def test_bad_feedback_is_refused_naming_the_problem(
    client: httpx.AsyncClient, workspace: Workspace, body: bytes, status: int, problem: str
) -> None:
    answer = await client.post(FEEDBACK, content=body, headers=AUTH)
    assert answer.status_code == status
    assert problem in answer.json()["error"]
    assert workspace.feedback.read("echo").num_rows == 0


async def test_feedback_needs_the_token_and_the_served_name(client: httpx.AsyncClient) -> None:
    labels = {"labels": [{"request_id": "a", "label": 1}]}
    missing = await client.post(FEEDBACK, json=labels)
    wrong = await client.post(FEEDBACK, json=labels, headers={"authorization": "Bearer no"})
    other = await client.post("/v1/models/other:feedback", json=labels, headers=AUTH)
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert other.status_code == 404
    assert "this server serves 'echo'" in other.json()["error"]


async def test_a_server_without_a_feedback_log_has_no_feedback_route(
    workspace: Workspace, echo: str
) -> None:
    server = ModelServer(
        registry=workspace.registry,
        deployment=implicit_deployment(echo),
        settings=serve_settings(),
    )
    app = create_app(server)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answer = await client.post(FEEDBACK, json={"labels": []})
    assert answer.status_code == 404
    assert "keeps no feedback" in answer.json()["error"]


async def test_predictions_and_labels_are_stamped_by_the_servers_clock(
    workspace: Workspace, echo: str, tmp_path: Path
) -> None:
    clock = SimulatedClock(tmp_path / "clock.json")
    clock.set(datetime(2011, 4, 1, 12, tzinfo=UTC))
    server = ModelServer(
        registry=workspace.registry,
        deployment=implicit_deployment(echo),
        settings=serve_settings(),
        sink=workspace.prediction_log(),
        clock=clock,
    )
    feedback = FeedbackLog(
        tables=workspace.feedback.tables, spool_dir=spool_dir(workspace.settings), clock=clock
    )
    app = create_app(server, feedback=feedback)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answer = await client.post("/v1/models/echo:predict", json={"instances": rows(0, 1, 2)})
            clock.advance(timedelta(days=1))
            labels = [{"request_id": answer.json()["request_id"], "row_index": 2, "label": 2}]
            stored = await client.post(FEEDBACK, json={"labels": labels})
    assert stored.json()["recorded"] == 1
    table = feedback.labelled("echo").to_pylist()
    # A simulated clock runs at real speed between moves: the stamps are the set time and after.
    noon = datetime(2011, 4, 1, 12, tzinfo=UTC)
    assert {row["time"].date() for row in table} == {noon.date()}
    assert all(row["time"] >= noon for row in table)
    [labelled] = [row for row in table if row["label"] is not None]
    assert labelled["labelled_at"].date() == date(2011, 4, 2)
    assert labelled["label_delay_s"] >= 86_400
