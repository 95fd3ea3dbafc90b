"""Media in requests: uploaded files or base64 JSON fields -> images / bytes, with the limits.

Framework-free: the API layer hands over the parsed options (JSON object or form
fields) and the uploads; everything here raises errors that carry their status.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from edge_mm.errors import BadInput, RequestTooLarge, Unprocessable
from edge_mm.media.images import decode_base64_image, decode_image


@dataclass(frozen=True)
class MediaLimits:
    max_upload_bytes: int
    max_image_pixels: int
    max_items: int
    max_audio_seconds: float = 600.0
    max_video_seconds: float = 300.0
    max_video_frames: int = 64


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the form field it came in, and its bytes."""

    field: str
    data: bytes
    content_type: str | None = None


RAW = "raw"  # the field name of a body sent as the file itself (Content-Type image/jpeg, audio/wav...)


def form_options(form: Mapping[str, str]) -> dict[str, Any]:
    """Form or query fields -> option values: numbers, booleans and JSON lists parsed; the rest stay strings."""
    out: dict[str, Any] = {}
    for key, value in form.items():
        text = value.strip()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        out[key] = parsed if isinstance(parsed, int | float | bool | list) else value
    return out


def images_from(
    payload: Mapping[str, Any], uploads: list[Upload], limits: MediaLimits, key: str = "image"
) -> list[Image.Image]:
    """The request's images: uploads in field ``image``/``images`` (or a raw body), or base64 JSON
    ``image`` (one) / ``images`` (a list). At least one, at most ``max_items``."""
    files = [u for u in uploads if u.field in (key, key + "s", RAW)]
    if files:
        if len(files) > limits.max_items:
            raise RequestTooLarge(f"{len(files)} images; the limit is {limits.max_items}")
        return [
            decode_image(u.data, max_bytes=limits.max_upload_bytes, max_pixels=limits.max_image_pixels) for u in files
        ]
    if uploads:
        names = sorted({u.field for u in uploads})
        raise Unprocessable(f"no file in field '{key}' (got {names})")
    texts = _base64_items(payload, key, limits)
    return [
        decode_base64_image(t, max_bytes=limits.max_upload_bytes, max_pixels=limits.max_image_pixels) for t in texts
    ]


def _base64_items(payload: Mapping[str, Any], key: str, limits: MediaLimits) -> list[str]:
    if key in payload:
        value = payload[key]
        items = [value] if isinstance(value, str) else None
    elif key + "s" in payload:
        value = payload[key + "s"]
        items = value if isinstance(value, list) and value else None
    else:
        raise Unprocessable(f"'{key}' is required: upload a file in form field '{key}' or send base64 in JSON '{key}'")
    if items is None or not all(isinstance(v, str) for v in items):
        raise Unprocessable(f"'{key}' must be a base64 string ('{key}s': a non-empty list of them)")
    if len(items) > limits.max_items:
        raise RequestTooLarge(f"{len(items)} items in '{key}s'; the limit is {limits.max_items}")
    return items


_DATA_URL = re.compile(r"^data:[^,]*;base64,", re.IGNORECASE)


def bytes_from(payload: Mapping[str, Any], uploads: list[Upload], limits: MediaLimits, key: str) -> bytes:
    """One file's bytes: upload in field ``key`` (or raw body), or base64 JSON ``key``; size-checked."""
    files = [u for u in uploads if u.field in (key, RAW)]
    if len(files) > 1:
        raise Unprocessable(f"send one file in field '{key}', not {len(files)}")
    if files:
        data = files[0].data
    elif uploads:
        raise Unprocessable(f"no file in field '{key}' (got {sorted({u.field for u in uploads})})")
    else:
        value = payload.get(key)
        if value is None:
            raise Unprocessable(
                f"'{key}' is required: upload a file in form field '{key}' or send base64 in JSON '{key}'"
            )
        if not isinstance(value, str):
            raise Unprocessable(f"'{key}' must be a base64 string")
        text = re.sub(r"\s+", "", _DATA_URL.sub("", value.strip()))
        if len(text) * 3 // 4 > limits.max_upload_bytes:
            raise RequestTooLarge(
                f"'{key}' is about {len(text) * 3 // 4} bytes; the limit is {limits.max_upload_bytes}"
            )
        try:
            data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise BadInput(f"'{key}' is not valid base64") from None
    if not data:
        raise BadInput(f"'{key}' is empty")
    if len(data) > limits.max_upload_bytes:
        raise RequestTooLarge(f"'{key}' is {len(data)} bytes; the limit is {limits.max_upload_bytes}")
    return data
