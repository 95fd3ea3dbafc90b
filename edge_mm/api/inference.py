"""Helpers every inference route shares: the JSON body, the model lookup, timing and admission."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, request

from edge_mm.errors import BadInput, Unprocessable, UnsupportedMediaType
from edge_mm.runtime.registry import Registry, Served
from edge_mm.tasks.fields import Limits

T = TypeVar("T")


def registry() -> Registry:
    return current_app.extensions["edge_mm"]["registry"]


def limits() -> Limits:
    s = current_app.extensions["edge_mm"]["settings"]
    return Limits(max_text_chars=s["server.max_text_chars"], max_items=s["server.max_items"])


def json_body() -> dict[str, Any]:
    """The request's JSON object: 415 for another content type, 400 when malformed, 422 when not an object."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(f"send Content-Type: application/json (got {request.mimetype or 'none'!r})")
    payload = request.get_json(silent=True)
    if payload is None:
        raw = request.get_data(cache=True)
        raise BadInput("request body is empty" if not raw else "request body is not valid JSON")
    if not isinstance(payload, dict):
        raise Unprocessable(f"request body must be a JSON object, not {type(payload).__name__}")
    return payload


def model_name(payload: dict[str, Any]) -> str | None:
    name = payload.get("model")
    if name is not None and not isinstance(name, str):
        raise Unprocessable("'model' must be a string")
    return name


def run(served: Served, work: Callable[[], T]) -> T:
    """Run ``work`` inside the model's admission slot; record device and time for the headers."""
    with served.admission.slot():
        t0 = time.perf_counter()
        result = work()
        g.inference_ms = (time.perf_counter() - t0) * 1000
    g.device = served.device
    g.model = served.name
    return result
