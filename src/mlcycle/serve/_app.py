"""The HTTP face of a model server: Starlette routes and bearer tokens.

The prediction routes are raw ASGI endpoints (``_endpoint``); the rest
(health, metadata, metrics, OpenAPI) are plain Starlette endpoints. Every
endpoint but the health probes needs the bearer token when the server has
one. Errors answer as ``{"error": "..."}``, which Open Inference Protocol
clients expect, with a status chosen by exception class.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from mlcycle.errors import MlcycleError, NotFound
from mlcycle.serve._endpoint import (
    PredictEndpoint,
    error_body,
    infer_codec,
    unauthorized,
    v1_codec,
)
from mlcycle.serve._errors import status_of
from mlcycle.serve._metrics import CONTENT_TYPE
from mlcycle.serve._openapi import docs_page, openapi_document, server_version
from mlcycle.serve._server import ModelServer
from mlcycle.serve._v2 import datatype_of

if TYPE_CHECKING:
    from mlcycle.serve._routing import Lane

__all__ = ["create_app"]

_JSON = "application/json"
Endpoint = Callable[[Request], Awaitable[Response]]


def create_app(server: ModelServer, *, token: str | None = None) -> Starlette:
    """The ASGI app serving ``server``; ``token``: the bearer token every endpoint but health needs.

    The app starts the server (loads its models, follows the event log) on
    startup and stops it (answers what is queued, closes the sink) on shutdown.
    """
    handlers = _Handlers(server)
    guard = _guard(token)
    predict = PredictEndpoint(server, v1_codec(), token=token)
    infer = PredictEndpoint(server, infer_codec(), token=token, binary_ok=True)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        del app
        await server.start()
        try:
            yield
        finally:
            await server.stop()

    routes = [  # the prediction routes first: Starlette tries routes in order
        Route("/v1/models/{name}:predict", predict, methods=["POST"]),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
        Route("/v2/health/live", handlers.live),
        Route("/v2/health/ready", handlers.ready),
        Route("/v2", guard(handlers.server_metadata)),
        Route("/v2/models/{name}", guard(handlers.model_metadata)),
        Route("/v2/models/{name}/versions/{version}", guard(handlers.model_metadata)),
        Route("/v2/models/{name}/ready", guard(handlers.model_ready)),
        Route("/v2/models/{name}/versions/{version}/ready", guard(handlers.model_ready)),
        Route("/metrics", guard(handlers.metrics)),
        Route("/openapi.json", guard(handlers.openapi)),
        Route("/docs", guard(handlers.docs)),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _guard(token: str | None) -> Callable[[Endpoint], Endpoint]:
    """Wrap endpoints so they answer 401 without ``Authorization: Bearer <token>``."""
    if token is None:
        return lambda endpoint: endpoint
    expected = f"Bearer {token}".encode()

    def wrap(endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                status, body, headers = unauthorized()
                named = {key.decode(): value.decode() for key, value in headers}
                return Response(body, status, named, media_type=_JSON)
            return await endpoint(request)

        return guarded

    return wrap


class _Handlers:
    def __init__(self, server: ModelServer) -> None:
        self.server = server

    async def live(self, request: Request) -> Response:
        del request
        return _json({"live": True})

    async def ready(self, request: Request) -> Response:
        del request
        ready = self.server.ready
        return _json({"ready": ready}, status=200 if ready else 503)

    async def server_metadata(self, request: Request) -> Response:
        del request
        return _json(
            {"name": "mlcycle", "version": server_version(), "extensions": ["binary_tensor_data"]}
        )

    async def model_metadata(self, request: Request) -> Response:
        try:
            lane = self._lane(request)
        except MlcycleError as exc:
            return _error(status_of(exc), str(exc))
        routes = self.server.routes
        model = lane.model
        return _json(
            {
                "name": self.server.name,
                "versions": [str(answering.model.version) for answering in routes.answering],
                "platform": "onnxruntime_onnx" if model.runtime == "onnx" else "mlcycle",
                "inputs": [
                    {"name": spec.name, "datatype": datatype_of(spec.type), "shape": [-1]}
                    for spec in model.signature.inputs
                ],
                "outputs": [
                    {
                        "name": spec.name,
                        "datatype": datatype_of(spec.type),
                        "shape": [-1, *(spec.shape or ())],
                    }
                    for spec in model.signature.outputs
                ],
            }
        )

    async def model_ready(self, request: Request) -> Response:
        try:
            self._lane(request)
        except MlcycleError as exc:
            return _error(status_of(exc), str(exc))
        return _json({"name": self.server.name, "ready": True})

    async def metrics(self, request: Request) -> Response:
        del request
        return Response(self.server.metrics.render(), media_type=CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        del request
        return _json(openapi_document(self.server.name))

    async def docs(self, request: Request) -> Response:
        del request
        return HTMLResponse(docs_page(openapi_document(self.server.name)))

    def _lane(self, request: Request) -> Lane:
        name = request.path_params["name"]
        if name != self.server.name:
            raise _unknown_model(self.server, name)
        version = request.path_params.get("version")
        routes = self.server.routes
        return routes.answering[0] if version is None else routes.for_version(version)


def _unknown_model(server: ModelServer, name: str) -> NotFound:
    return NotFound(f"no model '{name}' here; this server serves '{server.name}'")


def _json(content: Any, *, status: int = 200) -> Response:  # Any: JSON values
    return Response(orjson.dumps(content), status_code=status, media_type=_JSON)


def _error(status: int, message: str) -> Response:
    return Response(error_body(message), status_code=status, media_type=_JSON)
