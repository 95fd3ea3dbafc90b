"""HTTP request -> :class:`~edge_mm.tasks.payload.Payload`: a JSON body, a multipart form, or raw media.

Media come as multipart uploads (field ``image`` / ``audio`` / ``video``), as base64 in a
JSON body (same field names), or as the raw body with an image/audio/video Content-Type
(options then go in the query string). Text routes take JSON only.
"""

from __future__ import annotations

from typing import Any

from flask import request

from edge_mm.errors import BadInput, Unprocessable, UnsupportedMediaType
from edge_mm.tasks.payload import RAW, Limits, Payload, Upload, form_options

RAW_TYPES = ("image/", "audio/", "video/", "application/octet-stream")


def json_body() -> dict[str, Any]:
    """The request's JSON object: 415 for another content type, 400 when malformed, 422 when not an object."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(f"send Content-Type: application/json (got {request.mimetype or 'none'!r})")
    try:
        payload = request.get_json(silent=True)
    except RecursionError:
        raise BadInput("request body is nested too deeply") from None
    if payload is None:
        raw = request.get_data(cache=True)
        raise BadInput("request body is empty" if not raw else "request body is not valid JSON")
    if not isinstance(payload, dict):
        raise Unprocessable(f"request body must be a JSON object, not {type(payload).__name__}")
    return payload


def _uploads(cap: int) -> tuple[Upload, ...]:
    """The form's files, each read up to ``cap`` bytes (enough to say 413), then closed (large ones
    are spooled to temporary files)."""
    uploads = []
    for name, f in request.files.items(multi=True):
        try:
            uploads.append(Upload(name, f.stream.read(cap), f.mimetype))
        finally:
            f.close()
    return tuple(uploads)


def read_payload(media: bool, limits: Limits, *, forms: bool = False) -> Payload:
    """The request as a Payload; ``media``: the route also takes multipart and raw media bodies; ``forms``
    (DeepStack's routes): also a url-encoded form, or an empty body (the query string's fields)."""
    mimetype = request.mimetype
    if forms and mimetype == "application/x-www-form-urlencoded":
        return Payload(form_options(request.form))
    if forms and not mimetype and not request.get_data(cache=True):
        return Payload(form_options(request.args))
    if forms and mimetype == "multipart/form-data":
        return Payload(form_options(request.form), _uploads(limits.max_upload_bytes + 1))
    if not media:
        return Payload(json_body())
    if mimetype == "application/json":
        return Payload(json_body())
    if mimetype == "multipart/form-data":
        return Payload(form_options(request.form), _uploads(limits.max_upload_bytes + 1))
    if mimetype.startswith(RAW_TYPES):
        return Payload(form_options(request.args), (Upload(RAW, request.get_data(), mimetype),))
    raise UnsupportedMediaType(
        "send multipart/form-data, application/json (base64) or the file itself with its media type "
        f"(got {mimetype or 'none'!r})"
    )
