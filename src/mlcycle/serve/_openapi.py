"""The server's OpenAPI document, and a docs page that renders it with no network.

The hot routes are plain Starlette endpoints, so the document is written
here rather than generated. ``/docs`` is one self-contained HTML page: the
spec is embedded in it and laid out by a few lines of inline script, so it
works offline and behind the bearer token (no CDN, no second fetch).
"""

from __future__ import annotations

import functools
import html
import importlib.metadata
from typing import Any

import orjson

__all__ = ["docs_page", "openapi_document", "server_version"]


@functools.cache
def server_version() -> str:
    """mlcycle's installed version (the package root is above ``serve`` and not imported)."""
    try:
        return importlib.metadata.version("mlcycle")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


_ERROR = {
    "description": "An error, named with its fix",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
        }
    },
}
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string", "example": "FP64"},
        "parameters": {"type": "object"},
        "data": {"type": "array", "items": {}},
    },
}


def _operation(summary: str, *, body: dict[str, Any] | None = None) -> dict[str, Any]:  # Any: JSON
    operation: dict[str, Any] = {  # Any: JSON
        "summary": summary,
        "responses": {
            "200": {"description": "OK"},
            "401": _ERROR,
            "404": _ERROR,
        },
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
        operation["responses"].update(
            {"400": _ERROR, "413": _ERROR, "422": _ERROR, "500": _ERROR, "503": _ERROR}
        )
    return operation


def openapi_document(deployment: str) -> dict[str, Any]:  # Any: JSON values
    """The OpenAPI 3.1 document of a server for ``deployment``."""
    infer = _operation(
        "Predict with the Open Inference Protocol (v2): one 1-D input per column, or one "
        "2-D tensor [rows, inputs] when every input is a number",
        body={
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "inputs": {"type": "array", "items": _TENSOR},
                "outputs": {"type": "array", "items": {"type": "object"}},
            },
        },
    )
    predict = _operation(
        'Predict from records: {"instances": [{"column": value, ...}, ...]}',
        body={
            "type": "object",
            "required": ["instances"],
            "properties": {"instances": {"type": "array", "items": {"type": "object"}}},
        },
    )
    feedback = _operation(
        "Record ground-truth labels for earlier predictions, by the request_id each answered "
        "with (row_index: the row within a request of several, 0 by default). The last label "
        "recorded for a row wins; request ids not in the prediction log are kept and listed "
        "in unknown_request_ids",
        body={
            "type": "object",
            "required": ["labels"],
            "properties": {
                "labels": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["request_id", "label"],
                        "properties": {
                            "request_id": {"type": "string"},
                            "row_index": {"type": "integer", "minimum": 0},
                            "label": {"type": ["number", "boolean", "string"]},
                        },
                    },
                }
            },
        },
    )
    model = "/v2/models/{name}"
    version = "/v2/models/{name}/versions/{version}"
    paths = {
        "/v2/health/live": {"get": _operation("Liveness (no token needed)")},
        "/v2/health/ready": {
            "get": _operation("Readiness: every variant loaded (no token needed)")
        },
        "/v2": {"get": _operation("Server metadata")},
        model: {"get": _operation("Model metadata: inputs, outputs, versions")},
        version: {"get": _operation("Metadata of one served version")},
        f"{model}/ready": {"get": _operation("Model readiness")},
        f"{version}/ready": {"get": _operation("Readiness of one served version")},
        f"{model}/infer": {"post": infer},
        f"{version}/infer": {"post": infer},
        "/v1/models/{name}:predict": {"post": predict},
        "/v1/models/{name}:feedback": {"post": feedback},
        "/metrics": {"get": _operation("Prometheus metrics, summed over workers")},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"mlcycle model server: {deployment}",
            "version": server_version(),
            "description": f"Predictions from deployment '{deployment}' "
            f"(every {{name}} below is '{deployment}').",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; }}
h2 {{ font-size: 1rem; margin: 1.4rem 0 .3rem; }}
code, pre {{ font: 13px ui-monospace, monospace; }}
.verb {{ display: inline-block; min-width: 3.5rem; font-weight: bold; }}
pre {{ background: #f4f4f4; padding: .6rem; overflow: auto; }}
</style></head><body>
<h1>{title}</h1><p>{description}</p><div id="paths"></div>
<p>The machine-readable document is at <a href="/openapi.json">/openapi.json</a>.</p>
<script id="spec" type="application/json">{spec}</script>
<script>
const spec = JSON.parse(document.getElementById("spec").textContent);
const root = document.getElementById("paths");
for (const [path, verbs] of Object.entries(spec.paths)) {{
  for (const [verb, op] of Object.entries(verbs)) {{
    const h = document.createElement("h2");
    h.innerHTML = '<span class="verb"></span> <code></code>';
    h.children[0].textContent = verb.toUpperCase(); h.children[1].textContent = path;
    const p = document.createElement("p"); p.textContent = op.summary;
    root.append(h, p);
    if (op.requestBody) {{
      const pre = document.createElement("pre");
      pre.textContent = JSON.stringify(op.requestBody.content["application/json"].schema, null, 2);
      root.append(pre);
    }}
  }}
}}
</script></body></html>
"""


def docs_page(document: dict[str, Any]) -> str:  # Any: JSON values
    """A self-contained HTML page listing every endpoint of ``document``."""
    spec = orjson.dumps(document).decode().replace("</", "<\\/")
    info = document["info"]
    return _PAGE.format(
        title=html.escape(info["title"]), description=html.escape(info["description"]), spec=spec
    )
