"""Triton's model repository extension: list the versions on disk, load (hot swap), unload; and rollback.

``POST /v2/repository/index``, ``POST /v2/repository/models/{name}/load``, ``.../unload`` and edge-mm's
``.../rollback`` (runtime/swap.py does the work). They need the API key when ``server.api_keys`` is set
(api/auth.py, as every route); with no keys set they answer only clients on this machine (loopback), as
changing what serves is an administrator's act. Errors are the protocol's ``{"error": "..."}``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from edge_mm.api import errors
from edge_mm.api.context import settings
from edge_mm.errors import BadInput, Unauthorized
from edge_mm.runtime.swap import Repository

NAME = "repository"
bp = Blueprint(NAME, __name__, url_prefix="/v2/repository")


def error_body(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": message}


errors.register(bp, error_body)


def repository() -> Repository:
    return current_app.extensions["edge_mm"]["repository"]


@bp.before_request
def administrators_only() -> None:
    if settings()["server.api_keys"]:
        return  # the app's key check ran already
    if request.remote_addr not in ("127.0.0.1", "::1"):
        raise Unauthorized(
            "the repository API answers other machines only when server.api_keys is set (then send the key)"
        )


def _body() -> dict[str, Any]:
    """The request's JSON object, or {} for an empty body (Triton's load and unload take optional ones)."""
    if not request.get_data(cache=True):
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadInput("the request body must be a JSON object (or empty)")
    return body


@bp.post("/index")
def index() -> Response:
    body = _body()
    rows = repository().index()
    if body.get("ready") is True:
        rows = [r for r in rows if r["state"] == "READY"]
    return jsonify(rows)


@bp.post("/models/<name>/load")
def load(name: str) -> Response:
    _body()
    return jsonify(repository().load(name))


@bp.post("/models/<name>/unload")
def unload(name: str) -> Response:
    _body()
    return jsonify(repository().unload(name))


@bp.post("/models/<name>/rollback")
def rollback(name: str) -> Response:
    _body()
    return jsonify(repository().rollback(name))
