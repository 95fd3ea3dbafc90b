"""Untrusted image bytes -> an RGB ``PIL.Image``, with size limits checked early.

Runtime code: Pillow only (no torchvision). Errors map to HTTP statuses:

- empty payload, corrupt or truncated JPEG/PNG/WebP/BMP/GIF, invalid base64
  -> :class:`BadInput` (400)
- payload over ``max_bytes``, or ``width * height`` over ``max_pixels`` (read
  from the header, before any pixel is decoded), or Pillow's own
  decompression-bomb guard -> :class:`RequestTooLarge` (413)
- anything Pillow is not allowed to identify as one of :data:`SUPPORTED_FORMATS`
  -> :class:`UnsupportedMediaType` (415). This covers other image formats (TIFF,
  ICO, PDF, HEIC...) *and* payloads that are not images at all (random bytes,
  text): we cannot tell "garbage" from "a format we do not parse", and the fix for
  the client is the same, so both answer 415 "not a supported image type".
  Only bytes that start with a supported format's signature but fail to parse
  are 400, since there the client sent the right kind of file, damaged.

Only the supported formats' parsers ever see the bytes (``Image.open(formats=...)``).
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, ImageOps, UnidentifiedImageError

from edge_mm.errors import BadInput, RequestTooLarge, UnsupportedMediaType
from edge_mm.media.base64_data import decode_base64

# Pillow format names; MPO (multi-picture JPEG from cameras) opens via the JPEG plugin.
SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
SUPPORTED_TEXT = "JPEG, PNG, WebP, BMP or GIF"

# Errors Pillow raises on damaged data while parsing headers or decoding pixels.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


def sniff_format(data: bytes) -> str | None:
    """Pillow name of the supported format whose signature ``data`` starts with, else None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data.startswith(b"BM"):
        return "BMP"
    return None


def _open(data: bytes, max_bytes: int) -> Image.Image:
    """Read the header only (nothing decoded yet), with the errors of :func:`decode_image`."""
    if not data:
        raise BadInput("image is empty")
    if len(data) > max_bytes:
        raise RequestTooLarge(f"image is {len(data)} bytes; the limit is {max_bytes}")
    try:
        return Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise RequestTooLarge(f"image has too many pixels: {exc}") from None
    except UnidentifiedImageError:
        kind = sniff_format(data)
        if kind is not None:
            raise BadInput(f"image looks like {kind} but its header is corrupt") from None
        raise UnsupportedMediaType(f"not a supported image type; send {SUPPORTED_TEXT}") from None
    except _DECODE_ERRORS as exc:
        raise BadInput(f"image header is corrupt: {exc}") from None


def open_image(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """The image with only its header read, ``width * height`` checked against ``max_pixels``;
    :func:`load_rgb` decodes it. The errors are those of :func:`decode_image`."""
    image = _open(data, max_bytes)
    width, height = image.size
    if width * height > max_pixels:
        raise RequestTooLarge(f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    return image


def load_rgb(image: Image.Image) -> Image.Image:
    """Decode an opened image to RGB, orientation fixed from EXIF (see :func:`decode_image`)."""
    try:
        image.load()
    except _DECODE_ERRORS as exc:
        raise BadInput(f"image data is corrupt or truncated: {exc}") from None
    upright: Image.Image = image
    try:
        upright = ImageOps.exif_transpose(image)
    except (*_DECODE_ERRORS, KeyError, TypeError):
        pass  # a damaged EXIF block should not cost the user the picture: keep it unrotated
    return _to_rgb(upright)


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Decode one image to RGB, orientation fixed from EXIF.

    ``max_bytes``: limit on ``len(data)`` in bytes. ``max_pixels``: limit on
    ``width * height`` as stored in the file (EXIF rotation does not change it).
    Animated GIF/WebP: the first frame. Transparent pixels are composited onto
    white. Pillow's global ``Image.MAX_IMAGE_PIXELS`` guard still applies on top
    of ``max_pixels`` and also answers 413. Returns a fully loaded ``"RGB"`` image.
    """
    return load_rgb(open_image(data, max_bytes=max_bytes, max_pixels=max_pixels))


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> ``"RGB"``; alpha (incl. palette transparency) over white."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_base64_image(text: str, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Decode plain base64 or a ``data:image/...;base64,`` URL (see media/base64_data.py) with
    :func:`decode_image`. A data URL whose type is not ``image/*`` -> 415."""
    data = decode_base64(text, what="image", max_bytes=max_bytes, media_type="image/")
    return decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
