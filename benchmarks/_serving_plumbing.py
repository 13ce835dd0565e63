"""The plumbing limit of the serving benchmark: the same server stack answering a constant.

A bare Starlette app on uvicorn (uvloop, httptools through ``mlcycle serve``'s own
protocol, which sends each response in one write; no access log), the stack ``mlcycle
serve`` runs on. Its predict routes read and parse the body with orjson, as any server must,
and answer a constant prediction without touching a model. Run by the benchmark as
``python -m uvicorn _serving_plumbing:app --app-dir benchmarks --workers N ...``.
"""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ANSWER = orjson.dumps({"predictions": [42.0]})


async def predict(request: Request) -> Response:
    """Parse the body, answer the constant."""
    orjson.loads(await request.body())
    return Response(ANSWER, media_type="application/json")


async def health(_request: Request) -> Response:
    """Ready as soon as it listens."""
    return Response(b"{}", media_type="application/json")


app = Starlette(
    routes=[
        Route("/predict", predict, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ]
)
