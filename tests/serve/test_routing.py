"""Traffic policies from a deployment record: single, canary, A/B and shadow."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from tests.serve.conftest import (
    ListSink,
    client_for,
    logged_copies,
    logged_rows,
    rows,
    shadow_log,
    until,
)

from mlcycle.errors import ValidationFailed
from mlcycle.serve import check_deployment
from mlcycle.store import Deployment, Variant
from mlcycle.workspace import Workspace

pytestmark = pytest.mark.anyio
PREDICT = "/v1/models/bikes:predict"
SHADOWED = Deployment(
    name="bikes",
    variants=(Variant("live", "echo/1"), Variant("dark", "echo/2", shadow=True)),
    policy="shadow",
)


def split(policy: str, *, sticky: str | None = None) -> Deployment:
    return Deployment(
        name="bikes",
        variants=(
            Variant("stable", "echo/1", weight=90),
            Variant("candidate", "echo/2", weight=10),
        ),
        policy=policy,  # type: ignore[arg-type]
        sticky_key=sticky,
    )


async def test_canary_splits_by_weight_and_sticks_by_key(workspace: Workspace, echo: str) -> None:
    del echo
    async with client_for(workspace, split("canary", sticky="user")) as (client, _):
        seen: dict[str, set[str]] = {}
        for user in range(200):
            for _ in range(2):
                answer = await client.post(
                    PREDICT, json={"instances": rows(1)}, headers={"user": f"u{user}"}
                )
                seen.setdefault(f"u{user}", set()).add(answer.headers["x-variant"])
        by_row = await client.post(PREDICT, json={"instances": [{"id": 1.0, "x": 0.5}]})
    assert all(len(variants) == 1 for variants in seen.values())
    shares = Counter(next(iter(v)) for v in seen.values())
    assert shares["candidate"] > 0
    assert shares["stable"] > shares["candidate"] * 3
    assert by_row.status_code == 200


async def test_rows_waiting_in_one_lane_go_when_the_last_arriving_request_takes_another(
    workspace: Workspace, echo: str
) -> None:
    del echo
    body_ends = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b'{"instances": [{"id": 7.0, '
        await body_ends.wait()
        yield b'"x": 0.5}]}'

    async with client_for(workspace, split("canary", sticky="user")) as (client, server):
        stable = server.routes.answering[0]
        users: dict[str, str] = {}  # a sticky key for each lane
        for n in range(100):
            users.setdefault(server.routes.choose(f"u{n}").variant.name, f"u{n}")
        stable.queue.max_wait_s = 600  # only the other request's arrival lets the rows go
        late = asyncio.create_task(
            client.post(PREDICT, content=slow_body(), headers={"user": users["candidate"]})
        )
        await until(lambda: server.arriving == 1)
        waiting = asyncio.create_task(
            client.post(PREDICT, json={"instances": rows(3)}, headers={"user": users["stable"]})
        )
        await until(lambda: stable.queue.queued == 1)
        await asyncio.sleep(0.05)
        assert not waiting.done(), "a request is still arriving: the rows wait for it"
        body_ends.set()
        answers = await asyncio.wait_for(asyncio.gather(late, waiting), 30)
    assert [a.headers["x-variant"] for a in answers] == ["candidate", "stable"]
    assert [round(a.json()["predictions"][0]) for a in answers] == [1007, 3]


async def test_ab_records_the_assignment_per_request(workspace: Workspace, echo: str) -> None:
    del echo
    sink = ListSink()
    async with client_for(workspace, split("ab"), sink=sink) as (client, _):
        answers = [await client.post(PREDICT, json={"instances": rows(5)}) for _ in range(60)]
    logged = {request: batch.variant for batch in sink.batches for request in batch.request_ids}
    for answer in answers:
        body = answer.json()
        assert answer.headers["x-variant"] == body["variant"] == logged[body["request_id"]]
        expected = 5 if body["variant"] == "stable" else 1005
        assert round(body["predictions"][0]) == expected
    assert set(logged.values()) == {"stable", "candidate"}


async def test_the_shadow_gets_a_copy_the_caller_never_sees(
    workspace: Workspace, echo: str
) -> None:
    del echo
    async with client_for(workspace, SHADOWED) as (client, _):
        answers = [await client.post(PREDICT, json={"instances": rows(n)}) for n in range(1, 21)]
        shadowed = await logged_copies(workspace, 20)
    assert [round(a.json()["predictions"][0]) for a in answers] == list(range(1, 21))
    assert {a.headers["x-variant"] for a in answers} == {"live"}
    assert {copy["variant"] for copy in shadowed} == {"dark"}
    assert sorted(np.round([copy["output"] for copy in shadowed])) == [
        n + 1000 for n in range(1, 21)
    ]


async def test_the_shadow_logs_each_row_of_concurrent_batches_as_the_primary_did(
    workspace: Workspace, echo: str
) -> None:
    """Requests of 1 to 6 rows, merged into batches and split past 4 rows: every row copied once."""
    del echo
    sizes = [1 + n % 6 for n in range(60)]
    async with client_for(workspace, SHADOWED, max_batch_size=4) as (client, _):
        answers = await asyncio.gather(
            *(
                client.post(PREDICT, json={"instances": rows(*range(100 * n, 100 * n + size))})
                for n, size in enumerate(sizes)
            )
        )
        copies = await logged_copies(workspace, sum(sizes))
    logged = logged_rows(workspace)
    assert all(answer.status_code == 200 for answer in answers)
    answered = sorted(
        (r["request_id"], r["row_index"], r["inputs"]["id"], r["output"])
        for r in logged
        if not r["shadow"]
    )
    shadowed = sorted(
        (c["request_id"], c["row_index"], c["inputs"]["id"], c["output"]) for c in copies
    )
    assert len(answered) == len(shadowed) == sum(sizes)
    assert [(r, i, x) for r, i, x, _ in shadowed] == [(r, i, x) for r, i, x, _ in answered]
    assert all(round(out) == round(x) + 1000 for _, _, x, out in shadowed)


async def test_a_shadow_with_other_inputs_reads_the_ones_it_takes_from_the_log(
    workspace: Workspace, echo: str
) -> None:
    """Shadows taking the inputs in another order, or fewer, read them by name from the log.

    One taking an input the answering variant does not take fails its
    copies (requests never carry it): it logs nothing, and nobody waits.
    """
    del echo
    frame = pd.DataFrame({"x": np.linspace(0, 1, 20), "id": np.arange(20.0)})
    reordered = LinearRegression().fit(frame, frame["id"] * 2)  # inputs (x, id), not (id, x)
    workspace.registry.register("twice", reordered, input_example=frame.head(5))
    narrow = LinearRegression().fit(frame[["id"]], frame["id"] * 3)
    workspace.registry.register("narrow", narrow, input_example=frame[["id"]].head(5))
    wider = frame.assign(temp=np.linspace(5, 25, 20))
    wide = LinearRegression().fit(wider, wider["id"])
    workspace.registry.register("wide", wide, input_example=wider.head(5))
    deployment = Deployment(
        name="bikes",
        variants=(
            Variant("live", "echo/1"),
            Variant("reordered", "twice/1", shadow=True),
            Variant("narrow", "narrow/1", shadow=True),
            Variant("wide", "wide/1", shadow=True),
        ),
        policy="shadow",
    )
    async with client_for(workspace, deployment) as (client, _):
        answers = [await client.post(PREDICT, json={"instances": rows(n)}) for n in (3, 4, 5)]
        await logged_copies(workspace, 6)
    shadowed = shadow_log(workspace)  # the server stopped: every shadow's log is written out
    assert [round(a.json()["predictions"][0]) for a in answers] == [3, 4, 5]
    outputs = {
        variant: sorted(round(c["output"]) for c in shadowed if c["variant"] == variant)
        for variant in {c["variant"] for c in shadowed}
    }
    assert outputs == {"reordered": [6, 8, 10], "narrow": [9, 12, 15]}, "wide needs temp"
    features = {
        (c["variant"], *sorted(k for k, v in c["inputs"].items() if v is not None))
        for c in shadowed
    }
    assert features == {("reordered", "id", "x"), ("narrow", "id")}


async def test_shadow_copies_are_shed_when_the_queue_is_full(
    workspace: Workspace, echo: str
) -> None:
    del echo
    async with client_for(workspace, SHADOWED, shadow_queue=1) as (client, server):
        answers = await asyncio.gather(
            *(client.post(PREDICT, json={"instances": rows(n)}) for n in range(40))
        )
        metrics = (await client.get("/metrics")).text
    assert all(answer.status_code == 200 for answer in answers)
    assert server.name == "bikes"
    assert 'mlcycle_serve_shed_total{deployment="bikes",reason="shadow"}' in metrics


@pytest.mark.parametrize(
    ("variants", "policy", "words"),
    [
        ((Variant("a", "m/1"), Variant("a", "m/2")), "canary", "names a variant twice"),
        ((Variant("a", "m/1", shadow=True),), "shadow", "only shadow variants"),
        ((Variant("a", "m/1"), Variant("b", "m/2")), "single", "exactly one"),
        ((Variant("a", "m/1"),), "shadow", "at least one shadow"),
        (
            (Variant("a", "m/1", weight=60), Variant("b", "m/2", weight=30)),
            "canary",
            "add up to 100",
        ),
        ((Variant("a", "m/1", weight=0), Variant("b", "m/2", weight=100)), "ab", "each above 0"),
    ],
)
def test_deployments_no_policy_can_route_are_refused(
    variants: tuple[Variant, ...], policy: str, words: str
) -> None:
    deployment = Deployment(name="d", variants=variants, policy=policy)  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed, match=words):
        check_deployment(deployment)


async def test_a_promotion_is_served_without_a_restart(workspace: Workspace, echo: str) -> None:
    async with client_for(workspace, echo) as (client, server):
        before = await client.post("/v1/models/echo:predict", json={"instances": rows(1)})
        workspace.registry.promote("echo", 2, to="production")
        for _ in range(500):  # a guard against hanging; the server polls every 0.1 s
            answer = await client.post("/v1/models/echo:predict", json={"instances": rows(1)})
            assert answer.status_code == 200
            if answer.json()["version"] == 2:
                break
            await asyncio.sleep(0.02)
        metrics = (await client.get("/metrics")).text
    assert before.json()["version"] == 1
    assert round(answer.json()["predictions"][0]) == 1001
    assert server.routes.answering[0].model.version == 2
    assert 'mlcycle_serve_model_loads_total{deployment="echo",model="echo"' in metrics
