"""decode_image / decode_base64_image: formats, orientation, limits, error statuses."""

from __future__ import annotations

import base64
import io
import random
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from edge_mm.errors import BadInput, RequestTooLarge, UnsupportedMediaType
from edge_mm.media.images import decode_base64_image, decode_image

LIMITS = {"max_bytes": 10_000_000, "max_pixels": 10_000_000}
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_with_header_size(width: int, height: int) -> bytes:
    """A valid 8x8 PNG whose IHDR claims ``width`` x ``height`` (a decompression bomb)."""
    data = bytearray(encode(Image.new("RGB", (8, 8)), "PNG"))
    assert data[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def close_to(pixel: tuple[int, ...], expected: tuple[int, int, int], tol: int = 40) -> bool:
    """Lossy formats shift solid colours a little."""
    return all(abs(a - b) <= tol for a, b in zip(pixel, expected, strict=True))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF"])
def test_supported_formats_decode_to_rgb(chelsea_small: Image.Image, fmt: str) -> None:
    image = decode_image(encode(chelsea_small, fmt), **LIMITS)
    assert image.mode == "RGB"
    assert image.size == (90, 60)
    diff = np.abs(np.asarray(image, np.int16) - np.asarray(chelsea_small, np.int16))
    assert diff.mean() < 20  # the same picture, give or take lossy coding


def test_real_png_photo(chelsea_bytes: bytes) -> None:
    image = decode_image(chelsea_bytes, **LIMITS)
    assert (image.mode, image.size) == ("RGB", (451, 300))


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_gives_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, BLUE, GREEN)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)
    with Image.open(io.BytesIO(data)) as check:
        assert getattr(check, "n_frames", 1) == 3
    image = decode_image(data, **LIMITS)
    assert image.mode == "RGB"
    assert close_to(image.getpixel((8, 8)), RED)


def test_multi_picture_jpeg_from_cameras_gives_first_picture() -> None:
    pictures = [Image.new("RGB", (8, 6), RED), Image.new("RGB", (8, 6), BLUE)]
    data = encode(pictures[0], "MPO", save_all=True, append_images=pictures[1:])
    image = decode_image(data, **LIMITS)
    assert close_to(image.getpixel((4, 3)), RED)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16"])
def test_other_modes_become_rgb(chelsea_small: Image.Image, mode: str) -> None:
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    image = decode_image(encode(chelsea_small.convert(mode), fmt), **LIMITS)
    assert (image.mode, image.size) == ("RGB", (90, 60))


def test_transparency_is_composited_on_white() -> None:
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    image.putpixel((0, 0), (255, 0, 0, 255))
    decoded = decode_image(encode(image, "PNG"), **LIMITS)
    assert decoded.getpixel((0, 0)) == RED
    assert decoded.getpixel((3, 3)) == (255, 255, 255)


def test_exif_orientation_rotates() -> None:
    # Stored 40 wide x 20 tall: left half red, right half blue. Orientation 6 means
    # "rotate 90 degrees clockwise to display": 20 wide x 40 tall, red on top.
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    image = decode_image(encode(stored, "JPEG", exif=exif, quality=95), **LIMITS)
    assert image.size == (20, 40)
    assert close_to(image.getpixel((10, 5)), RED)
    assert close_to(image.getpixel((10, 35)), BLUE)


def test_over_max_bytes_is_413(chelsea_bytes: bytes) -> None:
    with pytest.raises(RequestTooLarge) as info:
        decode_image(chelsea_bytes, max_bytes=len(chelsea_bytes) - 1, max_pixels=10**7)
    assert info.value.status == 413
    decode_image(chelsea_bytes, max_bytes=len(chelsea_bytes), max_pixels=10**7)


def test_pixel_limit_is_inclusive(chelsea_small: Image.Image) -> None:
    data = encode(chelsea_small, "PNG")
    decode_image(data, max_bytes=10**7, max_pixels=90 * 60)
    with pytest.raises(RequestTooLarge):
        decode_image(data, max_bytes=10**7, max_pixels=90 * 60 - 1)


def test_bomb_is_413_before_pixels_are_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    # 25 Mpx: under Pillow's own guard, so our max_pixels check is what refuses it.
    with pytest.raises(RequestTooLarge, match="5000x5000"):
        decode_image(png_with_header_size(5_000, 5_000), max_bytes=10**7, max_pixels=10**7)


def test_pillow_bomb_guard_is_413_too() -> None:
    # 30000^2 = 9e8 px is over twice Pillow's MAX_IMAGE_PIXELS: Image.open itself refuses.
    assert 2 * (Image.MAX_IMAGE_PIXELS or 0) < 30_000**2
    with pytest.raises(RequestTooLarge):
        decode_image(png_with_header_size(30_000, 30_000), max_bytes=10**7, max_pixels=10**12)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF"])
@pytest.mark.parametrize("keep", [0.5, 30], ids=["half", "30-bytes"])
def test_truncated_is_400(chelsea_small: Image.Image, fmt: str, keep: float) -> None:
    data = encode(chelsea_small, fmt)
    cut = int(len(data) * keep) if keep < 1 else int(keep)
    with pytest.raises(BadInput) as info:
        decode_image(data[:cut], **LIMITS)
    assert info.value.status == 400


def test_empty_is_400() -> None:
    with pytest.raises(BadInput, match="empty"):
        decode_image(b"", **LIMITS)


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PDF", "PPM", "TGA"])
def test_other_image_formats_are_415(chelsea_small: Image.Image, fmt: str) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        decode_image(encode(chelsea_small, fmt), **LIMITS)
    assert info.value.status == 415


@pytest.mark.parametrize(
    "data",
    [random.Random(0).randbytes(4096), b"hello, world", b"%PDF-1.4\n", b"\x00" * 64],
    ids=["random", "text", "pdf-magic", "zeros"],
)
def test_not_an_image_is_415(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType, match="not a supported image type"):
        decode_image(data, **LIMITS)


# --- base64 ---------------------------------------------------------------------------


def test_base64_plain_and_data_url(chelsea_small: Image.Image) -> None:
    text = base64.b64encode(encode(chelsea_small, "PNG")).decode()
    for payload in (text, f"data:image/png;base64,{text}", f"DATA:image/jpeg;BASE64,{text}"):
        image = decode_base64_image(payload, **LIMITS)
        assert (image.mode, image.size) == ("RGB", (90, 60))


def test_base64_tolerates_line_breaks_urlsafe_and_missing_padding() -> None:
    data = encode(Image.new("RGB", (7, 5), RED), "PNG")
    wrapped = base64.encodebytes(data).decode()  # 76-column lines
    assert "\n" in wrapped
    assert decode_base64_image(wrapped, **LIMITS).size == (7, 5)
    urlsafe = base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert decode_base64_image(urlsafe, **LIMITS).size == (7, 5)


@pytest.mark.parametrize("text", ["@@@@not base64@@@@", "abcde", "YWJj=ZGVm", "é" * 8])
def test_base64_garbage_is_400(text: str) -> None:
    with pytest.raises(BadInput):
        decode_base64_image(text, **LIMITS)


@pytest.mark.parametrize("text", ["", "   ", "data:image/png;base64,"])
def test_base64_empty_is_400(text: str) -> None:
    with pytest.raises(BadInput, match="empty"):
        decode_base64_image(text, **LIMITS)


def test_data_url_must_be_base64_image() -> None:
    with pytest.raises(BadInput, match="base64"):
        decode_base64_image("data:image/png,rawbytes", **LIMITS)
    with pytest.raises(UnsupportedMediaType):
        decode_base64_image("data:text/plain;base64,aGVsbG8=", **LIMITS)


def test_base64_size_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("payload was decoded")

    monkeypatch.setattr(base64, "b64decode", no_decoding)
    with pytest.raises(RequestTooLarge):
        decode_base64_image("A" * 1336, max_bytes=1000, max_pixels=10**7)  # 1002 bytes


def test_base64_size_limit_is_exact() -> None:
    data = encode(Image.new("RGB", (3, 3), RED), "PNG")
    text = base64.b64encode(data).decode()
    assert decode_base64_image(text, max_bytes=len(data), max_pixels=100).size == (3, 3)
    with pytest.raises(RequestTooLarge):
        decode_base64_image(text, max_bytes=len(data) - 1, max_pixels=100)


def test_base64_of_non_image_is_415() -> None:
    text = base64.b64encode(b"just some text, not a picture").decode()
    with pytest.raises(UnsupportedMediaType):
        decode_base64_image(text, **LIMITS)
