"""The prediction endpoints as raw ASGI apps: the hot path, with nothing it does not need.

Starlette routes to them, but they read the scope's headers, receive the
body and send the answer themselves, without request and response objects:
on a single-row request those cost as much as the model. Each request is
admitted (or shed with 503), its body read within the limit, decoded and
checked against the chosen variant's signature, queued for a micro-batch,
and answered with ``x-variant`` naming who answered.
"""

from __future__ import annotations

import hmac
import logging
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from mlcycle.errors import MlcycleError, NotFound
from mlcycle.ids import new_id
from mlcycle.serve._errors import MalformedRequest, Overloaded, PayloadTooLarge, status_of
from mlcycle.serve._feedback import MAX_REQUEST_ID
from mlcycle.serve._server import Answer, ModelServer
from mlcycle.serve._v2 import decode_inputs, encode_outputs

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from mlcycle.serve._batching import Batcher
    from mlcycle.serve._routing import Lane
    from mlcycle.serve._rows import Rows, Schema

__all__ = [
    "PredictEndpoint",
    "error_body",
    "infer_codec",
    "read_body",
    "unauthorized",
    "v1_codec",
]

_log = logging.getLogger("mlcycle.serve")
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_JSON_TYPE = (b"content-type", b"application/json")
_HEADER_LENGTH = "inference-header-content-length"

Headers = dict[bytes, bytes]
Decoded = tuple[Callable[["Schema"], "Rows"], Callable[[], Any]]
"""The rows for a schema; the first row as ``{column: value}`` (read only for a sticky key)."""
Decode = Callable[[Any, bytes], Decoded]  # Any: the parsed JSON body
Render = Callable[[Answer, Any, str], tuple[bytes, list[tuple[bytes, bytes]]]]  # Any: JSON


class PredictEndpoint:
    """One prediction endpoint (v1 or v2), as an ASGI app Starlette routes to."""

    def __init__(
        self,
        server: ModelServer,
        codec: tuple[Decode, Render],
        *,
        token: str | None,
        binary_ok: bool = False,
    ) -> None:
        self.server = server
        self.decode, self.render = codec
        self.expected = None if token is None else f"Bearer {token}".encode()
        self.binary_ok = binary_ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request."""
        status, body, headers = await self._answer(scope, receive)
        headers.append((b"content-length", str(len(body)).encode()))
        headers.append(_JSON_TYPE)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _answer(
        self, scope: Scope, receive: Receive
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        server = self.server
        arrived = time.perf_counter()
        headers: Headers = dict(scope["headers"])
        if self.expected is not None and not hmac.compare_digest(
            headers.get(b"authorization", b""), self.expected
        ):
            return unauthorized()
        given = headers.get(b"x-request-id")
        request_id = given.decode("utf-8", "replace") if given else server.new_request_id()
        if len(request_id) > MAX_REQUEST_ID:
            return _refused(
                server,
                400,
                f"x-request-id is {len(request_id):,} characters long; give at most "
                f"{MAX_REQUEST_ID} (labels name the prediction by it), or none to get one",
                server.new_request_id(),
                arrived,
            )
        try:
            server.admit()
        except Overloaded as exc:
            return _refused(server, 503, str(exc), request_id, arrived)
        lane: Lane[Batcher] | None = None
        reached = False
        try:
            params = scope["path_params"]
            if params["name"] != server.name:
                raise NotFound(
                    f"no model '{params['name']}' here; this server serves '{server.name}'"
                )
            body = await read_body(headers, receive, server.settings.max_body_bytes)
            payload, tail = _parse(headers, body, binary_ok=self.binary_ok)
            rows_of, first_row = self.decode(payload, tail)
            key = _sticky_key(headers, server.deployment.sticky_key, first_row)
            reached = True
            lane, job = server.queue(
                rows_of,
                key=key,
                request_id=request_id,
                arrived=arrived,
                version=params.get("version"),
            )
            answer = await server.answer(lane, job)
            content, extra = self.render(answer, payload, server.name)
        except MlcycleError as exc:
            status = status_of(exc)
            server.count(lane, status)
            server.record_failure(
                lane, request_id=request_id, status=status, message=str(exc), arrived=arrived
            )
            close = [(b"connection", b"close")] if status == 413 else []
            return status, error_body(str(exc)), [(b"x-request-id", request_id.encode()), *close]
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
            message = (
                f"the model failed on this request (error id {error_id}; the server log has "
                "the details)"
            )
            server.record_failure(
                lane, request_id=request_id, status=500, message=message, arrived=arrived
            )
            return (
                500,
                error_body(message, error_id=error_id),
                [(b"x-request-id", request_id.encode())],
            )
        finally:
            server.release(arrived=not reached)
        lane.metrics.answers.answered(time.perf_counter() - arrived)
        extra.append((b"x-variant", lane.variant.name.encode()))
        return 200, content, extra


def _refused(
    server: ModelServer, status: int, message: str, request_id: str, arrived: float
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """A request refused before it was admitted (503: overloaded; 400: a bad request id)."""
    server.count(None, status)
    server.record_failure(
        None, request_id=request_id, status=status, message=message, arrived=arrived
    )
    headers = [(b"x-request-id", request_id.encode())]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    return status, error_body(message), headers


def v1_codec() -> tuple[Decode, Render]:
    """Decode ``{"instances": [...]}``, answer ``{"predictions": [...], ...}``."""

    def decode(payload: Any, tail: bytes) -> Decoded:  # Any: JSON
        del tail
        if type(payload) is not dict or "instances" not in payload:
            raise MalformedRequest('the body must be {"instances": [{"column": value}, ...]}')
        instances = payload["instances"]
        first = instances[0] if type(instances) is list and instances else None
        return (lambda schema: schema.from_records(instances)), lambda: first

    def render(
        answer: Answer, payload: Any, deployment: str
    ) -> tuple[bytes, list[tuple[bytes, bytes]]]:  # Any: JSON
        del payload, deployment
        model = answer.lane.model
        body = {
            "predictions": _jsonable(answer.outputs),
            "model": model.name,
            "version": model.version,
            "variant": answer.lane.variant.name,
            "request_id": answer.request_id,
        }
        return orjson.dumps(body, option=_NUMPY), []

    return decode, render


def infer_codec() -> tuple[Decode, Render]:
    """Decode Open Inference Protocol tensors, answer output tensors (binary when asked)."""

    def decode(payload: Any, tail: bytes) -> Decoded:  # Any: JSON
        return (lambda schema: decode_inputs(payload, tail, schema)), lambda: _first_values(payload)

    def render(
        answer: Answer, payload: Any, deployment: str
    ) -> tuple[bytes, list[tuple[bytes, bytes]]]:  # Any: JSON
        model = answer.lane.model
        name = model.signature.outputs[0].name if model.signature.outputs else "prediction"
        outputs, raw = encode_outputs(answer.outputs, name=name, binary=_wants_binary(payload))
        given = payload.get("id") if type(payload) is dict else None
        head = orjson.dumps(
            {
                "model_name": deployment,
                "model_version": str(model.version),
                "id": given if type(given) is str else answer.request_id,
                "parameters": {"variant": answer.lane.variant.name},
                "outputs": outputs,
            },
            option=_NUMPY,
        )
        if not raw:
            return head, []
        return head + raw, [(_HEADER_LENGTH.encode(), str(len(head)).encode())]

    return decode, render


def error_body(message: str, **extra: str) -> bytes:
    """An error as the protocol's ``{"error": "..."}``."""
    return orjson.dumps({"error": message, **extra})


def unauthorized() -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The 401 answer: status, body and headers."""
    message = "missing or wrong bearer token: send 'Authorization: Bearer <token>'"
    return 401, error_body(message), [(b"www-authenticate", b"Bearer")]


async def read_body(headers: Headers, receive: Receive, limit: int) -> bytes:
    """The body; ``PayloadTooLarge`` past ``limit`` bytes, also once decompressed."""
    length = headers.get(b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(_too_large(int(length), limit))
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise MalformedRequest("the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(_too_large(size, limit))
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    body = parts[0] if len(parts) == 1 else b"".join(parts)
    encoding = headers.get(b"content-encoding", b"identity").decode("latin-1").lower()
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "deflate"):
        raise MalformedRequest(
            f"unsupported Content-Encoding {encoding!r}; use gzip, deflate or none"
        )
    return _inflate(body, encoding, limit)


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """A gzip (of one member or several, as concatenated files are) or deflate body, whole."""
    plain = b""
    rest = body
    while True:
        inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
        try:
            plain += inflater.decompress(rest, limit + 1 - len(plain))
        except zlib.error as exc:
            raise MalformedRequest(f"the body is not valid {encoding} data: {exc}") from None
        if len(plain) > limit:
            raise PayloadTooLarge(_too_large(len(plain), limit, decompressed=True))
        if not inflater.eof:
            raise MalformedRequest(
                f"the body ends inside its {encoding} data: it was cut short; send all of it"
            )
        rest = inflater.unused_data
        if not rest:
            return plain
        if encoding != "gzip":
            raise MalformedRequest("the body has bytes after the end of its deflate data")


def _too_large(size: int, limit: int, *, decompressed: bool = False) -> str:
    what = "decompressed body" if decompressed else "body"
    return (
        f"the {what} has {size:,} bytes or more, over the limit of {limit:,} "
        "(serve.max_body_bytes); send fewer rows per request"
    )


def _parse(headers: Headers, body: bytes, *, binary_ok: bool) -> tuple[Any, bytes]:  # Any: JSON
    """The JSON part of the body and, under the binary extension, the bytes after it."""
    header = headers.get(_HEADER_LENGTH.encode())
    tail = b""
    if header is not None:
        if not binary_ok:
            raise MalformedRequest("binary tensor data is only accepted by the v2 infer endpoint")
        if not header.isdigit() or int(header) > len(body):
            raise MalformedRequest(
                f"Inference-Header-Content-Length {header.decode('latin-1')!r} does not fit a "
                f"body of {len(body)} bytes"
            )
        body, tail = body[: int(header)], body[int(header) :]
    if not body:
        raise MalformedRequest("the body is empty; send a JSON object")
    try:
        return orjson.loads(body), tail
    except orjson.JSONDecodeError as exc:
        kind = headers.get(b"content-type", b"").decode("latin-1")
        said = f" (Content-Type was {kind!r})" if kind and "json" not in kind else ""
        raise MalformedRequest(f"the body is not valid JSON{said}: {exc}") from None


def _sticky_key(headers: Headers, field: str | None, first_row: Callable[[], Any]) -> str | None:
    """The request's sticky key: the header named ``field``, else that column of the first row."""
    if field is None:
        return None
    header = headers.get(field.lower().encode())
    if header is not None:
        return header.decode("latin-1")
    first = first_row()
    if type(first) is dict and field in first:
        return str(first[field])
    return None


def _first_values(payload: Any) -> dict[str, Any] | None:  # Any: JSON
    """The first row of a v2 request as ``{input: value}`` (for the sticky key)."""
    if type(payload) is not dict or type(payload.get("inputs")) is not list:
        return None
    first: dict[str, Any] = {}  # Any: JSON
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


def _jsonable(outputs: Any) -> Any:  # Any: an array, or its values as lists
    return outputs if outputs.dtype.kind in "fiub" else outputs.tolist()
