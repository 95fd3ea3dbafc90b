"""The one place errors become responses: EdgeError -> its status; HTTP errors -> JSON; else 500."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from edge_mm.errors import EdgeError, error_body

log = logging.getLogger("edge_mm.api")

_HTTP_CODES = {
    400: "bad_input",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def _json(status: int, code: str, message: str, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    if request.path.startswith("/v1/vision/"):  # the DeepStack dialect has its own shape
        body = {"success": False, "error": message, "code": status}
    else:
        body = error_body(status, code, message)
    response = jsonify(body)
    response.status_code = status
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response


def register(app: Flask) -> None:
    @app.errorhandler(EdgeError)
    def edge_error(exc: EdgeError):  # type: ignore[no-untyped-def]
        if exc.status >= 500:
            log.warning("%s %s -> %d %s", request.method, request.path, exc.status, exc.message)
        return _json(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        status = exc.code or 500
        message = {
            404: f"no route {request.path}; see the README for the API",
            405: f"{request.method} is not allowed on {request.path}",
            413: f"request body is over the limit of {app.config['MAX_CONTENT_LENGTH']} bytes",
        }.get(status, exc.description or exc.name)
        return _json(status, _HTTP_CODES.get(status, "http_error"), message)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _json(500, "internal_error", "internal server error; the server log has the details")
