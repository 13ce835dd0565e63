"""The HTTP face of a model server: Starlette routes and bearer tokens.

The prediction routes are raw ASGI endpoints (``_endpoint``), dispatched by
their path before Starlette's middleware and router, which cost a single-row
request as much as its decoding; the rest (health, metadata, feedback,
metrics, OpenAPI) are plain Starlette endpoints. Every
endpoint but the health probes needs the bearer token when the server has
one. Errors answer as ``{"error": "..."}``, which Open Inference Protocol
clients expect, with a status chosen by exception class.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mlcycle.errors import MlcycleError, NotFound, ValidationFailed
from mlcycle.serve._endpoint import (
    PredictEndpoint,
    error_body,
    infer_codec,
    read_body,
    unauthorized,
    v1_codec,
)
from mlcycle.serve._errors import MalformedRequest, status_of
from mlcycle.serve._metrics import CONTENT_TYPE
from mlcycle.serve._openapi import docs_page, openapi_document, server_version
from mlcycle.serve._server import ModelServer
from mlcycle.serve._v2 import datatype_of

if TYPE_CHECKING:
    from mlcycle.serve._batching import Batcher
    from mlcycle.serve._feedback import FeedbackLog, Label
    from mlcycle.serve._routing import Lane

__all__ = ["ServingApp", "create_app"]

_JSON = "application/json"
Endpoint = Callable[[Request], Awaitable[Response]]


def create_app(
    server: ModelServer,
    *,
    token: str | None = None,
    feedback: FeedbackLog | None = None,
    after_stop: Callable[[], object] | None = None,
) -> ServingApp:
    """The ASGI app serving ``server``; ``token``: the bearer token every endpoint but health needs.

    ``feedback``: where ``POST /v1/models/NAME:feedback`` stores labels (without
    it, that route answers 404). The app starts the server (loads its models,
    follows the event log) on startup and stops it (answers what is queued,
    closes the sink) on shutdown, or when starting failed; then it calls
    ``after_stop``, such as the ``close`` of the workspace the server's stores
    came from (the sink's last rollover still uses them).
    """
    handlers = _Handlers(server, feedback)
    guard = _guard(token)
    predict = PredictEndpoint(server, v1_codec(), token=token)
    infer = PredictEndpoint(server, infer_codec(), token=token, binary_ok=True)

    routes = [  # the prediction routes too: for other methods (405) and the route list
        Route("/v1/models/{name}:predict", predict, methods=["POST"]),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
        Route("/v1/models/{name}:feedback", guard(handlers.feedback), methods=["POST"]),
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
    starlette = Starlette(routes=routes, lifespan=lambda app: _running(server, after_stop))
    return ServingApp(starlette, server, predict=predict, infer=infer, after_stop=after_stop)


@asynccontextmanager
async def _running(
    server: ModelServer, after_stop: Callable[[], object] | None
) -> AsyncIterator[None]:
    """Start ``server``; on the way out (or a failed start), stop it, then call ``after_stop``."""
    try:
        await server.start()
        yield
    finally:
        try:
            await server.stop()
        finally:
            if after_stop is not None:
                await asyncio.to_thread(after_stop)


class ServingApp:
    """The server's ASGI app: ``POST`` to a prediction route goes straight to its endpoint.

    Everything else (other methods and paths, the lifespan) goes to the
    Starlette app, whose routes include the prediction routes too. The paths
    match as Starlette's ``{name}`` does (one segment, no ``/``).
    """

    def __init__(
        self,
        app: Starlette,
        server: ModelServer,
        *,
        predict: ASGIApp,
        infer: ASGIApp,
        after_stop: Callable[[], object] | None = None,
    ) -> None:
        self.app = app
        self.server = server
        self.predict = predict
        self.infer = infer
        self.after_stop = after_stop

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        """Start the server (load its models, follow the log) on entry; stop it on exit.

        What the ASGI server's lifespan does, for running the app in process:
        ``after_stop`` (see ``create_app``) is called once the server has stopped.
        """
        return _running(self.server, self.after_stop)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch one connection's request (or the lifespan)."""
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith("/v2/models/") and path.endswith("/infer"):
                params = _infer_params(path[11:-6])
                if params is not None:
                    scope["path_params"] = params
                    await self.infer(scope, receive, send)
                    return
            elif path.startswith("/v1/models/") and path.endswith(":predict"):
                name = path[11:-8]
                if name and "/" not in name:
                    scope["path_params"] = {"name": name}
                    await self.predict(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _infer_params(middle: str) -> dict[str, str] | None:
    """``NAME`` or ``NAME/versions/V`` (of ``/v2/models/.../infer``) as path parameters."""
    name, versioned, version = middle.partition("/versions/")
    if not name or "/" in name:
        return None
    if not versioned:
        return {"name": name}
    if not version or "/" in version:
        return None
    return {"name": name, "version": version}


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
    def __init__(self, server: ModelServer, feedback: FeedbackLog | None) -> None:
        self.server = server
        self.feedback_log = feedback

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

    async def feedback(self, request: Request) -> Response:
        """Store ``{"labels": [{"request_id", "label", "row_index"?}, ...]}`` for this server."""
        server = self.server
        try:
            if request.path_params["name"] != server.name:
                raise _unknown_model(server, request.path_params["name"])
            if self.feedback_log is None:
                raise NotFound("this server keeps no feedback; `mlcycle serve` records it")
            headers = dict(request.scope["headers"])
            body = await read_body(headers, request.receive, server.settings.max_body_bytes)
            labels = _labels_of(body)
            if server.sink is not None:  # so labels for predictions just answered find them
                await asyncio.to_thread(server.sink.flush)
            receipt = await asyncio.to_thread(self.feedback_log.record, server.name, labels)
        except MlcycleError as exc:
            return _error(status_of(exc), str(exc))
        return _json({"recorded": receipt.recorded, "unknown_request_ids": receipt.unknown})

    async def metrics(self, request: Request) -> Response:
        del request
        return Response(self.server.metrics.render(), media_type=CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        del request
        return _json(openapi_document(self.server.name))

    async def docs(self, request: Request) -> Response:
        del request
        return HTMLResponse(docs_page(openapi_document(self.server.name)))

    def _lane(self, request: Request) -> Lane[Batcher]:
        name = request.path_params["name"]
        if name != self.server.name:
            raise _unknown_model(self.server, name)
        version = request.path_params.get("version")
        routes = self.server.routes
        return routes.answering[0] if version is None else routes.for_version(version)


def _labels_of(body: bytes) -> list[Label]:
    """The labels of a feedback body, as ``(request_id, row_index, label)``."""
    shape = 'the body must be {"labels": [{"request_id": "...", "label": 12.0}, ...]}'
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}; {shape}") from None
    if type(payload) is not dict or type(payload.get("labels")) is not list:
        raise ValidationFailed(shape)
    labels: list[Label] = []
    for position, item in enumerate(payload["labels"]):
        if type(item) is not dict or not {"request_id", "label"} <= item.keys():
            raise ValidationFailed(
                f"labels[{position}] is {orjson.dumps(item).decode()[:200]}; each label needs "
                '"request_id" and "label" (and "row_index" for a row after the first)'
            )
        unknown = sorted(item.keys() - {"request_id", "label", "row_index"})
        if unknown:
            raise ValidationFailed(
                f"labels[{position}] has unknown field(s) {unknown}; "
                "use request_id, row_index and label"
            )
        labels.append((item["request_id"], item.get("row_index", 0), item["label"]))
    return labels


def _unknown_model(server: ModelServer, name: str) -> NotFound:
    return NotFound(f"no model '{name}' here; this server serves '{server.name}'")


def _json(content: Any, *, status: int = 200) -> Response:  # Any: JSON values
    return Response(orjson.dumps(content), status_code=status, media_type=_JSON)


def _error(status: int, message: str) -> Response:
    return Response(error_body(message), status_code=status, media_type=_JSON)
