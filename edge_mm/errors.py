"""Exceptions that carry their HTTP status, and the one error body.

Code anywhere raises e.g. ``BadInput("text is empty")``; the API layer renders
every ``EdgeError`` with :func:`error_body`. Anything else becomes a generic 500.
"""

from __future__ import annotations

from typing import Any


class EdgeError(Exception):
    """Base class: ``status`` is the HTTP status, ``code`` a stable machine name."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadInput(EdgeError):
    """Malformed request: bad JSON, missing field, corrupt media."""

    status = 400
    code = "bad_input"


class Unauthorized(EdgeError):
    status = 401
    code = "unauthorized"


class NotFound(EdgeError):
    status = 404
    code = "not_found"


class RequestTooLarge(EdgeError):
    """Body, upload, text, pixel count, clip length or item count over a limit."""

    status = 413
    code = "too_large"


class UnsupportedMediaType(EdgeError):
    status = 415
    code = "unsupported_media_type"


class Unprocessable(EdgeError):
    """Well-formed but semantically wrong: wrong type, empty text, bad option value."""

    status = 422
    code = "unprocessable"


class NotImplementedHere(EdgeError):
    """A route whose model is not configured (e.g. object detection)."""

    status = 501
    code = "not_configured"


class Overloaded(EdgeError):
    """Admission queue full: answered at once with Retry-After."""

    status = 503
    code = "overloaded"


class ClientGone(EdgeError):
    """The client closed its connection before the answer: the work stops; nobody reads this."""

    status = 499  # nginx's "client closed request"
    code = "client_gone"


class NotReady(EdgeError):
    status = 503
    code = "not_ready"


class DeadlineExceeded(EdgeError):
    status = 504
    code = "deadline_exceeded"


class ConfigError(Exception):
    """Invalid settings or artifacts: stops start-up with a message that says how to fix it."""


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    """The one JSON error shape: ``{"error": {"status", "code", "message"}}``."""
    return {"error": {"status": status, "code": code, "message": message}}
