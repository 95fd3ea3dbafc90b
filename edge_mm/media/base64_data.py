"""The one base64 decoder for media sent inside JSON: plain base64 or a ``data:...;base64,`` URL.

Whitespace (line breaks) is ignored; URL-safe characters and missing ``=`` padding are
accepted. The size limit is checked on the encoded length, before decoding.
"""

from __future__ import annotations

import base64
import binascii
import re

from edge_mm.errors import BadInput, RequestTooLarge, UnsupportedMediaType

_DATA_URL = re.compile(r"^data:(?P<type>[^;,]*)(?P<params>(?:;[^;,]*)*),", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
_URLSAFE = str.maketrans("-_", "+/")


def decode_base64(text: str, *, what: str, max_bytes: int, media_type: str | None = None) -> bytes:
    """``text`` -> bytes. ``what`` names the field in messages; ``media_type`` (e.g. ``"image/"``) is the
    prefix a data URL's type must have (415 otherwise). Empty or invalid -> 400; over ``max_bytes`` -> 413."""
    payload = text.strip()
    match = _DATA_URL.match(payload)
    if match:
        declared = match["type"].strip().lower()
        params = [p.strip().lower() for p in match["params"].split(";") if p.strip()]
        if media_type and declared and not declared.startswith(media_type):
            raise UnsupportedMediaType(f"{what}: data URL type {declared!r} is not {media_type}*")
        if "base64" not in params:
            raise BadInput(f"{what}: data URL must be base64-encoded (';base64,')")
        payload = payload[match.end() :]
    payload = _WHITESPACE.sub("", payload)
    if not payload:
        raise BadInput(f"{what} is empty")
    decoded_len = len(payload) * 3 // 4 - (len(payload) - len(payload.rstrip("=")))
    if decoded_len > max_bytes:
        raise RequestTooLarge(f"{what} is about {decoded_len} bytes; the limit is {max_bytes}")
    payload = payload.translate(_URLSAFE) + "=" * (-len(payload) % 4)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"{what} is not valid base64") from None
