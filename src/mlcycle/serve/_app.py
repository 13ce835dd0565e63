"""The HTTP face of a model server: Starlette routes, raw bodies, orjson, bearer tokens.

Routes are plain Starlette endpoints reading the raw body with orjson:
no request models and no middleware on the hot path. Every endpoint but
the health probes needs the bearer token when the server has one. Errors
answer as ``{"error": "..."}`` (what Open Inference Protocol clients
expect) with a status chosen by exception class; an error in the model
answers 500 with an error id that is also in the server log.
"""

from __future__ import annotations

import hmac
import logging
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from mlcycle.errors import MlcycleError, NotFound
from mlcycle.ids import new_id
from mlcycle.serve._errors import MalformedRequest, Overloaded, PayloadTooLarge, status_of
from mlcycle.serve._metrics import CONTENT_TYPE
from mlcycle.serve._openapi import docs_page, openapi_document, server_version
from mlcycle.serve._server import Answer, ModelServer
from mlcycle.serve._v2 import datatype_of, decode_inputs, encode_outputs

if TYPE_CHECKING:
    from mlcycle.serve._routing import Lane
    from mlcycle.serve._rows import Rows, Schema

__all__ = ["create_app"]

_log = logging.getLogger("mlcycle.serve")
_JSON = "application/json"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_HEADER_LENGTH = "inference-header-content-length"
Endpoint = Callable[[Request], Awaitable[Response]]


def create_app(server: ModelServer, *, token: str | None = None) -> Starlette:
    """The ASGI app serving ``server``; ``token``: the bearer token every endpoint but health needs.

    The app starts the server (loads its models, follows the event log) on
    startup and stops it (answers what is queued, closes the sink) on shutdown.
    """
    handlers = _Handlers(server)
    guard = _guard(token)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        del app
        await server.start()
        try:
            yield
        finally:
            await server.stop()

    routes = [
        Route("/v2/health/live", handlers.live),
        Route("/v2/health/ready", handlers.ready),
        Route("/v2", guard(handlers.server_metadata)),
        Route("/v2/models/{name}", guard(handlers.model_metadata)),
        Route("/v2/models/{name}/versions/{version}", guard(handlers.model_metadata)),
        Route("/v2/models/{name}/ready", guard(handlers.model_ready)),
        Route("/v2/models/{name}/versions/{version}/ready", guard(handlers.model_ready)),
        Route("/v2/models/{name}/infer", guard(handlers.infer), methods=["POST"]),
        Route(
            "/v2/models/{name}/versions/{version}/infer", guard(handlers.infer), methods=["POST"]
        ),
        Route("/v1/models/{name}:predict", guard(handlers.v1_predict), methods=["POST"]),
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
                return _error(
                    401,
                    "missing or wrong bearer token: send 'Authorization: Bearer "
                    "<token>' with the server's token",
                    headers={"www-authenticate": "Bearer"},
                )
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

    async def v1_predict(self, request: Request) -> Response:
        def decode(payload: Any, tail: bytes) -> tuple[Callable[[Schema], Rows], Any]:  # Any: JSON
            del tail
            if type(payload) is not dict or "instances" not in payload:
                raise MalformedRequest('the body must be {"instances": [{"column": value}, ...]}')
            instances = payload["instances"]
            first = instances[0] if type(instances) is list and instances else None
            return (lambda schema: schema.from_records(instances)), first

        def render(answer: Answer, payload: Any) -> tuple[bytes, dict[str, str]]:  # Any: JSON
            del payload
            body = orjson.dumps(
                {"predictions": _jsonable(answer.outputs), **_who(answer)}, option=_NUMPY
            )
            return body, {}

        return await self._predict(request, decode, render)

    async def infer(self, request: Request) -> Response:
        def decode(payload: Any, tail: bytes) -> tuple[Callable[[Schema], Rows], Any]:  # Any: JSON
            return (lambda schema: decode_inputs(payload, tail, schema)), _first_values(payload)

        def render(answer: Answer, payload: Any) -> tuple[bytes, dict[str, str]]:  # Any: JSON
            model = answer.lane.model
            name = model.signature.outputs[0].name if model.signature.outputs else "prediction"
            outputs, raw = encode_outputs(answer.outputs, name=name, binary=_wants_binary(payload))
            given = payload.get("id") if type(payload) is dict else None
            head = orjson.dumps(
                {
                    "model_name": self.server.name,
                    "model_version": str(model.version),
                    "id": given if type(given) is str else answer.request_id,
                    "parameters": {"variant": answer.lane.variant.name},
                    "outputs": outputs,
                },
                option=_NUMPY,
            )
            if not raw:
                return head, {}
            return head + raw, {_HEADER_LENGTH: str(len(head))}

        return await self._predict(request, decode, render, binary_ok=True)

    async def _predict(
        self,
        request: Request,
        decode: Callable[[Any, bytes], tuple[Callable[[Schema], Rows], Any]],  # Any: JSON
        render: Callable[[Answer, Any], tuple[bytes, dict[str, str]]],  # Any: JSON
        *,
        binary_ok: bool = False,
    ) -> Response:
        server = self.server
        arrived = time.perf_counter()
        try:
            server.admit()
        except Overloaded as exc:
            server.count(None, 503)
            return _error(503, str(exc), headers={"retry-after": "1"})
        lane: Lane | None = None
        reached = False
        request_id = request.headers.get("x-request-id") or server.new_request_id()
        try:
            params = request.path_params
            if params["name"] != server.name:
                raise _unknown_model(server, params["name"])
            body = await _read_body(request, server.settings.max_body_bytes)
            payload, tail = _parse(request, body, binary_ok=binary_ok)
            rows_of, first = decode(payload, tail)
            key = _sticky_key(request, server.deployment.sticky_key, first)
            reached = True
            answer = await server.predict(
                rows_of,
                key=key,
                request_id=request_id,
                arrived=arrived,
                version=params.get("version"),
            )
            lane = answer.lane
            content, headers = render(answer, payload)
        except MlcycleError as exc:
            status = status_of(exc)
            server.count(lane, status)
            extra = {"connection": "close"} if status == 413 else {}
            return _error(status, str(exc), headers={"x-request-id": request_id, **extra})
        except Exception as exc:  # noqa: BLE001  (a model's own error: logged with an id, 500)
            error_id = new_id()
            _log.error(
                "error %s on request %s to %s: %s",
                error_id,
                request_id,
                server.name,
                exc,
                exc_info=exc,
            )
            server.count(lane, 500)
            return _error(
                500,
                f"the model failed on this request (error id {error_id}; the server log has "
                "the details)",
                headers={"x-request-id": request_id},
                extra={"error_id": error_id},
            )
        finally:
            server.release(arrived=not reached)
        server.count(lane, 200)
        headers.update(
            {
                "x-request-id": request_id,
                "x-variant": lane.variant.name,
                "x-model-version": lane.model.ref,
            }
        )
        return Response(content, media_type=_JSON, headers=headers)

    def _lane(self, request: Request) -> Lane:
        name = request.path_params["name"]
        if name != self.server.name:
            raise _unknown_model(self.server, name)
        version = request.path_params.get("version")
        routes = self.server.routes
        return routes.answering[0] if version is None else routes.for_version(version)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body; ``PayloadTooLarge`` past ``limit`` bytes, also once decompressed."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(_too_large(int(length), limit))
    if length is not None:
        body = await request.body()
    else:
        parts, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(_too_large(size, limit))
            parts.append(chunk)
        body = b"".join(parts)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "deflate"):
        raise MalformedRequest(
            f"unsupported Content-Encoding {encoding!r}; use gzip, deflate or none"
        )
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise MalformedRequest(f"the body is not valid {encoding} data: {exc}") from None
    if len(plain) > limit:
        raise PayloadTooLarge(_too_large(len(plain), limit, decompressed=True))
    return plain


def _too_large(size: int, limit: int, *, decompressed: bool = False) -> str:
    what = "decompressed body" if decompressed else "body"
    return (
        f"the {what} has {size:,} bytes or more, over the limit of {limit:,} "
        "(serve.max_body_bytes); send fewer rows per request"
    )


def _parse(request: Request, body: bytes, *, binary_ok: bool) -> tuple[Any, bytes]:  # Any: JSON
    """The JSON part of the body and, under the binary extension, the bytes after it."""
    header = request.headers.get(_HEADER_LENGTH)
    tail = b""
    if header is not None:
        if not binary_ok:
            raise MalformedRequest("binary tensor data is only accepted by the v2 infer endpoint")
        if not header.isdigit() or int(header) > len(body):
            raise MalformedRequest(
                f"Inference-Header-Content-Length {header!r} does not fit a body of "
                f"{len(body)} bytes"
            )
        body, tail = body[: int(header)], body[int(header) :]
    if not body:
        raise MalformedRequest("the body is empty; send a JSON object")
    try:
        return orjson.loads(body), tail
    except orjson.JSONDecodeError as exc:
        kind = request.headers.get("content-type")
        said = f" (Content-Type was {kind!r})" if kind and "json" not in kind else ""
        raise MalformedRequest(f"the body is not valid JSON{said}: {exc}") from None


def _sticky_key(request: Request, field: str | None, first: Any) -> str | None:  # Any: JSON
    """The request's sticky key: the header named ``field``, else that column of the first row."""
    if field is None:
        return None
    header = request.headers.get(field)
    if header is not None:
        return header
    if type(first) is dict and field in first:
        return str(first[field])
    return None


def _first_values(payload: Any) -> dict[str, Any] | None:  # Any: JSON
    """The first row of a v2 request as ``{input: value}`` (for the sticky key)."""
    if type(payload) is not dict or type(payload.get("inputs")) is not list:
        return None
    first: dict[str, Any] = {}
    for tensor in payload["inputs"]:
        if type(tensor) is dict and type(tensor.get("data")) is list and tensor["data"]:
            value = tensor["data"][0]
            while type(value) is list and value:
                value = value[0]
            first[str(tensor.get("name"))] = value
    return first


def _wants_binary(payload: Any) -> bool:  # Any: JSON
    if type(payload) is not dict:
        return False
    parameters = payload.get("parameters")
    if type(parameters) is dict and parameters.get("binary_data_output") is True:
        return True
    outputs = payload.get("outputs")
    if type(outputs) is not list:
        return False
    return any(
        type(o) is dict
        and type(o.get("parameters")) is dict
        and o["parameters"].get("binary_data") is True
        for o in outputs
    )


def _who(answer: Answer) -> dict[str, Any]:  # Any: JSON values
    model = answer.lane.model
    return {
        "model": model.name,
        "version": model.version,
        "variant": answer.lane.variant.name,
        "request_id": answer.request_id,
    }


def _jsonable(outputs: Any) -> Any:  # Any: an array, or its values as lists
    return outputs if outputs.dtype.kind in "fiub" else outputs.tolist()


def _unknown_model(server: ModelServer, name: str) -> NotFound:
    return NotFound(f"no model '{name}' here; this server serves '{server.name}'")


def _json(content: Any, *, status: int = 200) -> Response:  # Any: JSON values
    return Response(orjson.dumps(content), status_code=status, media_type=_JSON)


def _error(
    status: int,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
) -> Response:
    body = orjson.dumps({"error": message, **(extra or {})})
    return Response(body, status_code=status, media_type=_JSON, headers=headers)
