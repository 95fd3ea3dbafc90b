"""The one place errors become responses: EdgeError -> its status; HTTP errors -> JSON; else 500.

Blueprints with another error dialect (DeepStack) pass their own body maker to
:func:`register`; everything else gets the one body, ``{"error": {status, code, message}}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from edge_mm.errors import EdgeError, error_body

log = logging.getLogger("edge_mm.api")

Body = Callable[[int, str, str], tuple[int, dict[str, Any]]]  # (status, code, message) -> (status, body)


def edge_mm_body(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, error_body(status, code, message)


_HTTP_CODES = {
    400: "bad_input",
    404: "not_found",
    405: "method_not_allowed",
    411: "length_required",
    413: "too_large",
    415: "unsupported_media_type",
}


def _response(answer: tuple[int, dict[str, Any]], headers: dict[str, str] | None = None) -> Response:
    status, body = answer
    response = jsonify(body)
    response.status_code = status
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response


def register(target: Flask | Blueprint, body: Body = edge_mm_body) -> None:
    """Install the error handlers on an app or a blueprint, rendering with ``body``."""

    @target.errorhandler(EdgeError)
    def edge_error(exc: EdgeError) -> Response:
        if exc.status >= 500:
            log.warning("%s %s -> %d %s", request.method, request.path, exc.status, exc.message)
        return _response(body(exc.status, exc.code, exc.message), exc.headers)

    @target.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = {
            404: f"no route {request.path}; GET /openapi.json lists the routes (/docs shows them)",
            405: f"{request.method} is not allowed on {request.path}",
            413: f"request body is over the limit of {current_app.config['MAX_CONTENT_LENGTH']} bytes",
        }.get(status, exc.description or exc.name)
        return _response(body(status, _HTTP_CODES.get(status, "http_error"), message))

    @target.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _response(body(500, "internal_error", "internal server error; the server log has the details"))
