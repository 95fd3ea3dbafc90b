"""``GET /openapi.json``: an OpenAPI 3.1 document built from the app's routes, the task table's
request and answer models (pydantic, edge_mm/tasks/) and the error bodies; ``GET /docs``: Swagger
UI served from the ``swagger-ui-bundle-v2`` wheel (no CDN, works offline and frozen).

Every rule in the app's URL map becomes an operation: task routes from their ``Task``, the others
from :data:`ROUTES` below. A rule in neither is still listed, marked ``x-undescribed`` (a test
fails on it), so the document never silently misses a route.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import swagger_ui_bundle  # type: ignore[import-untyped]
from flask import Blueprint, Flask, Response, current_app, jsonify, send_from_directory
from pydantic import BaseModel

import edge_mm
from edge_mm.api.auth import is_open
from edge_mm.api.streams import openapi_routes as stream_routes
from edge_mm.errors import NotFound
from edge_mm.tasks.task import Task

bp = Blueprint("openapi", __name__)

ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
MEDIA_TYPES = {"image": "image/*", "audio": "audio/*", "video": "video/*"}
BINARY = {"type": "string", "format": "binary"}
SKIPPED_METHODS = {"HEAD", "OPTIONS"}
ASSET_PATHS = ("/playground/",)  # a page's fixed asset files
REF = "#/components/schemas/"

ERROR_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "description": "The one error body of edge-mm's routes.",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "code", "message"],
                "additionalProperties": False,
                "properties": {
                    "status": {"type": "integer"},
                    "code": {"type": "string", "description": "a stable machine name: bad_input, too_large, ..."},
                    "message": {"type": "string", "description": "what was wrong and how to fix it"},
                },
            }
        },
    },
    "DeepStackError": {
        "type": "object",
        "description": "DeepStack's error body (/v1/vision/*): 400 where edge-mm says 422.",
        "required": ["success", "error", "code"],
        "properties": {"success": {"const": False}, "error": {"type": "string"}, "code": {"type": "integer"}},
    },
    "V2Error": {
        "type": "object",
        "description": "The Open Inference Protocol's error body (/v2/*).",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
}
ERROR_TEXT = {
    400: "malformed request: bad JSON, corrupt media, bad base64",
    401: "missing or wrong API key",
    404: "no such model (or route)",
    409: "the model version could not be loaded; the versions that served still serve (the message says why)",
    413: "over a size limit: body, upload, text length, item count, pixels, duration",
    415: "unsupported content type or media format",
    422: "a field has the wrong type or value; the message names it",
    500: "internal error (generic; the server log has the details)",
    501: "the route's model is not configured",
    503: "overloaded or not ready; retry after Retry-After",
    504: "the request's deadline passed",
}
TASK_ERRORS = (400, 404, 413, 415, 422, 500, 503, 504)
DEEPSTACK_ERRORS = (400, 404, 413, 415, 500, 501, 503, 504)


def _obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "properties": properties}


JSON_OBJECT: dict[str, Any] = {"type": "object"}
STRINGS = {"type": "array", "items": {"type": "string"}}


def _op(
    summary: str,
    ok: dict[str, Any] | None = None,
    errors: tuple[int, ...] = (500,),
    error: str = "Error",
    body: dict[str, Any] | None = None,
    ok_type: str = "application/json",
) -> dict[str, Any]:
    """One described operation: its 200 schema, its error statuses and body, its request body."""
    responses: dict[str, Any] = {"200": {"description": "OK", "content": {ok_type: {"schema": ok or JSON_OBJECT}}}}
    for status in errors:
        responses[str(status)] = _error_response(status, error)
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = body
    return op


def _error_response(status: int, error: str) -> dict[str, Any]:
    return {"description": ERROR_TEXT[status], "content": {"application/json": {"schema": {"$ref": REF + error}}}}


READY = _obj(status={"const": "ready"}, models=STRINGS)
NOT_READY = _obj(status={"enum": ["loading", "failed"]}, detail={"type": "string"})
V2_TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "data": {"type": "array"},
        "parameters": {"type": "object"},
    },
}
V2_INFER_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "inputs": {"type": "array", "items": V2_TENSOR},
                    "outputs": {"type": "array", "items": {"type": "object"}},
                    "parameters": {"type": "object"},
                },
            }
        },
        "application/octet-stream": {
            "schema": BINARY,
            "description": "binary tensor data extension: JSON header of Inference-Header-Content-Length bytes, then tensors",
        },
    },
}
V2_READY = {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}}
V2_ERRORS = (400, 404, 500)
V2_INFER_ERRORS = (400, 404, 413, 415, 422, 500, 503, 504)


def _ready_op() -> dict[str, Any]:
    op = _op("Readiness: 200 once every model is loaded and warmed", READY)
    op["responses"]["503"] = {
        "description": "loading or failed",
        "content": {"application/json": {"schema": NOT_READY}},
    }
    return op


def _v2_ready(summary: str, errors: tuple[int, ...]) -> dict[str, Any]:
    op = _op(summary, V2_READY, errors, "V2Error")
    op["responses"]["400"] = {"description": "not ready (or bad request)", "content": {"application/json": {}}}
    op["responses"]["400"]["content"]["application/json"]["schema"] = {"anyOf": [V2_READY, {"$ref": REF + "V2Error"}]}
    return op


def _models_schema() -> dict[str, Any]:
    model = _obj(
        name={"type": "string"},
        task={"type": "string"},
        device={"type": "string"},
        dtype={"type": "string"},
        labels={"type": "integer"},
        warm_ms={"type": "number"},
        version={"type": "integer"},
        versions={"type": "array", "items": {"type": "integer"}},
        routes=STRINGS,
    )
    return _obj(models={"type": "array", "items": model})


# Every route that is not a task route: (path in OpenAPI form, method) -> its operation.
ROUTES: dict[tuple[str, str], Callable[[], dict[str, Any]]] = {
    ("/health/live", "get"): lambda: _op("Liveness", _obj(status={"const": "alive"})),
    ("/health/ready", "get"): _ready_op,
    ("/v1/models", "get"): lambda: _op("The served models and their routes", _models_schema()),
    ("/info", "get"): lambda: _op("Versions, device, limits, artifact hashes, admission and batching state"),
    ("/metrics", "get"): lambda: _op("Prometheus metrics (text exposition format)", BINARY, ok_type="text/plain"),
    ("/", "get"): lambda: _op(
        "The playground: try every served model in a browser", {"type": "string"}, ok_type="text/html"
    ),
    ("/openapi.json", "get"): lambda: _op("This document"),
    ("/docs", "get"): lambda: _op("Interactive API page (Swagger UI)", {"type": "string"}, ok_type="text/html"),
    ("/docs/{name}", "get"): lambda: _op("The API page's assets", BINARY, (404, 500), ok_type="*/*"),
    ("/v2", "get"): lambda: _op("Open Inference Protocol: server metadata", error="V2Error"),
    ("/v2/health/live", "get"): lambda: _op("Open Inference Protocol: liveness", error="V2Error"),
    ("/v2/health/ready", "get"): lambda: _v2_ready("Open Inference Protocol: readiness", (500,)),
    ("/v2/models/{name}", "get"): lambda: _op("Model metadata and tensor contract", None, V2_ERRORS, "V2Error"),
    ("/v2/models/{name}/versions/{version}", "get"): lambda: _op(
        "Model metadata (one version)", None, V2_ERRORS, "V2Error"
    ),
    ("/v2/models/{name}/ready", "get"): lambda: _v2_ready("Model readiness", V2_ERRORS),
    ("/v2/models/{name}/versions/{version}/ready", "get"): lambda: _v2_ready("Model readiness", V2_ERRORS),
    ("/v2/models/{name}/infer", "post"): lambda: _op(
        "Inference with JSON or binary tensors", None, V2_INFER_ERRORS, "V2Error", V2_INFER_BODY
    ),
    ("/v2/models/{name}/versions/{version}/infer", "post"): lambda: _op(
        "Inference (one version)", None, V2_INFER_ERRORS, "V2Error", V2_INFER_BODY
    ),
    ("/v2/repository/index", "post"): lambda: _op(
        "Model repository: every configured model's versions on disk, READY when served",
        {"type": "array", "items": JSON_OBJECT},
        (400, 401, 500),
        "V2Error",
    ),
    ("/v2/repository/models/{name}/load", "post"): lambda: _op(
        "Load the versions the model's version_policy selects; swap them in with no failed request",
        None,
        (400, 401, 404, 409, 500),
        "V2Error",
    ),
    ("/v2/repository/models/{name}/unload", "post"): lambda: _op(
        "Stop serving the model (requests in flight finish)", None, (400, 401, 404, 500), "V2Error"
    ),
    ("/v2/repository/models/{name}/rollback", "post"): lambda: _op(
        "Serve the version before the current one again (edge-mm's extension)",
        None,
        (400, 401, 404, 409, 500),
        "V2Error",
    ),
}
ROUTES.update(stream_routes(_op))  # /v1/streams: edge_mm/api/streams.py


class Components:
    """components/schemas, filled as models are referenced: ``{prefix}.{Model}`` names, so the
    tasks' same-named models (``Body``, ``Answer``) do not collide."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = dict(ERROR_SCHEMAS)

    def ref(self, prefix: str, model: type[BaseModel], mode: str) -> dict[str, Any]:
        name = f"{prefix}.{model.__name__}"
        if name not in self.schemas:
            schema = model.model_json_schema(ref_template=REF + prefix + ".{model}", mode=mode)  # type: ignore[arg-type]
            for def_name, definition in schema.pop("$defs", {}).items():
                self.schemas.setdefault(f"{prefix}.{def_name}", definition)
            self.schemas[name] = schema
        return {"$ref": REF + name}


def _form_schema(components: Components, task: Task) -> dict[str, Any]:
    """The multipart form: the body's options as form fields, and the task's media as file fields."""
    assert task.body is not None
    components.ref(task.name, task.body, "validation")
    body = components.schemas[f"{task.name}.{task.body.__name__}"]
    properties = {k: v for k, v in body["properties"].items() if k not in ("image", "images", *task.media)}
    for field in task.media:
        properties[field] = BINARY
        if field == "image" and task.dialect != "deepstack":
            properties["images"] = {"type": "array", "items": BINARY, "description": "several images"}
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if task.dialect == "deepstack":
        schema["required"] = ["image"]
    return schema


def _request_body(components: Components, task: Task) -> dict[str, Any]:
    assert task.body is not None
    content: dict[str, Any] = {"application/json": {"schema": components.ref(task.name, task.body, "validation")}}
    if task.media:
        content["multipart/form-data"] = {"schema": _form_schema(components, task)}
        for field in task.media:
            content[MEDIA_TYPES[field]] = {"schema": BINARY}
    return {"required": True, "content": content}


def task_operation(components: Components, task: Task) -> dict[str, Any]:
    deepstack = task.dialect == "deepstack"
    ok = components.ref(task.name, task.answer, "serialization") if task.answer else JSON_OBJECT
    op = _op(
        task.summary, ok, DEEPSTACK_ERRORS if deepstack else TASK_ERRORS, "DeepStackError" if deepstack else "Error"
    )
    op["operationId"] = task.name
    op["tags"] = ["DeepStack" if deepstack else "tasks"]
    if task.body is not None:
        op["requestBody"] = _request_body(components, task)
    if task.media:
        op["description"] = (
            f"Send the {' / '.join(task.media)} as a multipart upload, as base64 in a JSON body, or as the "
            "raw body with its media type (options then go in the query string)."
        )
    return op


_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def openapi_path(rule: str) -> str:
    """Werkzeug's ``/v2/models/<name>`` -> OpenAPI's ``/v2/models/{name}``."""
    return _CONVERTER.sub(r"{\1}", rule)


def _parameters(path: str) -> list[dict[str, Any]]:
    names = re.findall(r"{([^}]+)}", path)
    return [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]


def _operation(components: Components, tasks: dict[str, Task], path: str, method: str, view: Any) -> dict[str, Any]:
    task = tasks.get(path) if method == "post" else None
    if task is not None:
        return task_operation(components, task)
    described = ROUTES.get((path, method))
    if described is not None:
        return described()
    if method == "get" and path.startswith(ASSET_PATHS):
        return _op("A page's asset (script, style sheet)", {"type": "string"}, ok_type="*/*")
    summary = ((view.__doc__ or "").strip().splitlines() or [path])[0]
    return {"summary": summary, "x-undescribed": True, "responses": {"default": {"description": "any"}}}


def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``: every rule of its URL map (but static files)."""
    state = app.extensions["edge_mm"]
    tasks = {openapi_path(route): t for t in state["tasks"] for route in t.routes}
    keyed = bool(state["settings"]["server.api_keys"])
    components = Components()
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        path = openapi_path(rule.rule)
        for method in sorted((rule.methods or set()) - SKIPPED_METHODS):
            op = _operation(components, tasks, path, method.lower(), app.view_functions[rule.endpoint])
            if _parameters(path):
                op["parameters"] = _parameters(path)
            if keyed:
                op["security"] = [] if is_open(rule.rule) else [{"bearer": []}, {"apiKey": []}]
                if not is_open(rule.rule):
                    error = "DeepStackError" if path.startswith("/v1/vision/") else "Error"
                    op["responses"].setdefault("401", _error_response(401, error))
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edge-mm",
            "version": edge_mm.__version__,
            "description": "Offline multimodal inference. Errors: " + '{"error": {"status", "code", "message"}}'
            ' (DeepStack routes: {"success": false, "error", "code"}). An option sent as null means its default.',
        },
        "paths": paths,
        "components": {
            "schemas": components.schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """This document."""
    return jsonify(document(current_app))


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>edge-mm API</title>
<link rel="icon" href="docs/favicon-32x32.png">
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true});</script>
</body>
</html>
"""


@bp.get("/docs")
def docs() -> Response:
    """Swagger UI over /openapi.json; its assets come from the swagger-ui-bundle-v2 wheel."""
    return Response(PAGE, mimetype="text/html")


@bp.get("/docs/<name>")
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound(f"no asset {name!r} under /docs/")
    return send_from_directory(str(swagger_ui_bundle.swagger_ui_path), name, max_age=3600)
