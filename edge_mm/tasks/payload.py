"""What a task gets from a request, framework-free: option fields, uploaded files, and the limits.

The API layer turns a JSON body, a multipart form or a raw media body into a
:class:`Payload`; tasks pull texts, images and files out of it here. Media are only
collected and size-checked during ``parse``; decoding happens in ``run``, inside the
model's admission slot, so the queue and concurrency limits bound decoded memory too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from PIL import Image

from edge_mm.errors import BadInput, RequestTooLarge, Unprocessable
from edge_mm.media.base64_data import decode_base64
from edge_mm.media.images import load_rgb, open_image

RAW = "raw"  # the field name of a body sent as the file itself (Content-Type image/jpeg, audio/wav...)


@dataclass(frozen=True)
class Limits:
    """Per-request limits from the ``[server]`` settings."""

    max_text_chars: int
    max_items: int
    max_label_chars: int = 500
    max_upload_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_request_pixels: int = 64_000_000
    max_audio_seconds: float = 600.0
    max_video_seconds: float = 300.0
    max_video_frames: int = 64

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        """Each field from the ``server.<field>`` setting of the same name."""
        return cls(**{f.name: settings[f"server.{f.name}"] for f in fields(cls)})


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the form field it came in, and its bytes."""

    field: str
    data: bytes
    content_type: str | None = None


@dataclass(frozen=True)
class Payload:
    """A request's options (JSON object, form fields or query string) and its uploaded files."""

    fields: Mapping[str, Any]
    uploads: tuple[Upload, ...] = field(default=())

    def model_name(self, key: str = "model") -> str | None:
        """The model the request names in ``key``, or None for the first configured."""
        name = self.fields.get(key)
        if name is not None and not isinstance(name, str):
            raise Unprocessable(f"'{key}' must be a string")
        return name


def form_options(form: Mapping[str, str]) -> dict[str, Any]:
    """Form or query fields -> option values: numbers, booleans and JSON lists parsed; the rest stay strings."""
    out: dict[str, Any] = {}
    for key, value in form.items():
        text = value.strip()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        except RecursionError:
            raise BadInput(f"form field '{key}' is nested too deeply") from None
        out[key] = parsed if isinstance(parsed, int | float | bool | list) else value
    return out


@dataclass(frozen=True)
class Images:
    """Encoded images from one request; :meth:`decode` runs inside the model's slot."""

    blobs: tuple[bytes, ...]
    max_bytes: int
    max_pixels: int  # per image
    max_total_pixels: int  # all images of the request together

    def decode(self) -> list[Image.Image]:
        """RGB images; 413 before anything is decoded when their headers add up to too many pixels."""
        opened = [open_image(b, max_bytes=self.max_bytes, max_pixels=self.max_pixels) for b in self.blobs]
        total = sum(im.width * im.height for im in opened)
        if total > self.max_total_pixels:
            raise RequestTooLarge(
                f"the request's images hold {total} pixels; the limit per request is {self.max_total_pixels}"
            )
        return [load_rgb(im) for im in opened]

    def __len__(self) -> int:
        return len(self.blobs)


def images_from(payload: Payload, limits: Limits, key: str = "image") -> Images:
    """The request's images: uploads in field ``image``/``images`` (or a raw body), or base64 JSON
    ``image`` (one) / ``images`` (a list). At least one, at most ``max_items``; size-checked, not decoded."""
    files = [u for u in payload.uploads if u.field in (key, key + "s", RAW)]
    if payload.uploads and not files:
        names = sorted({u.field for u in payload.uploads})
        raise Unprocessable(f"no file in field '{key}' (got {names})")
    if files:
        blobs = [u.data for u in files]
    else:
        blobs = [
            decode_base64(t, what=key, max_bytes=limits.max_upload_bytes, media_type="image/")
            for t in _base64_items(payload.fields, key, limits)
        ]
    if len(blobs) > limits.max_items:
        raise RequestTooLarge(f"{len(blobs)} images; the limit is {limits.max_items}")
    for b in blobs:
        _check_size(b, key, limits)
    return Images(tuple(blobs), limits.max_upload_bytes, limits.max_image_pixels, limits.max_request_pixels)


def _base64_items(fields: Mapping[str, Any], key: str, limits: Limits) -> list[str]:
    if key in fields:
        value = fields[key]
        items = [value] if isinstance(value, str) else None
    elif key + "s" in fields:
        value = fields[key + "s"]
        items = value if isinstance(value, list) and value else None
    else:
        raise Unprocessable(f"'{key}' is required: upload a file in form field '{key}' or send base64 in JSON '{key}'")
    if items is None or not all(isinstance(v, str) for v in items):
        raise Unprocessable(f"'{key}' must be a base64 string ('{key}s': a non-empty list of them)")
    if len(items) > limits.max_items:
        raise RequestTooLarge(f"{len(items)} items in '{key}s'; the limit is {limits.max_items}")
    return items


def file_from(payload: Payload, limits: Limits, key: str) -> bytes:
    """One file's bytes: upload in field ``key`` (or raw body), or base64 JSON ``key``; size-checked."""
    files = [u for u in payload.uploads if u.field in (key, RAW)]
    if len(files) > 1:
        raise Unprocessable(f"send one file in field '{key}', not {len(files)}")
    if files:
        data = files[0].data
    elif payload.uploads:
        raise Unprocessable(f"no file in field '{key}' (got {sorted({u.field for u in payload.uploads})})")
    else:
        value = payload.fields.get(key)
        if value is None:
            raise Unprocessable(
                f"'{key}' is required: upload a file in form field '{key}' or send base64 in JSON '{key}'"
            )
        if not isinstance(value, str):
            raise Unprocessable(f"'{key}' must be a base64 string")
        data = decode_base64(value, what=f"'{key}'", max_bytes=limits.max_upload_bytes)
    _check_size(data, key, limits)
    return data


def _check_size(data: bytes, key: str, limits: Limits) -> None:
    if not data:
        raise BadInput(f"'{key}' is empty")
    if len(data) > limits.max_upload_bytes:
        raise RequestTooLarge(f"'{key}' is {len(data)} bytes; the limit is {limits.max_upload_bytes}")
