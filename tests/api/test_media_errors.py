"""The bad-media battery: every media route x truncated, wrong type, too big, decompression bomb,
missing field, bad base64 -> its status and the route's error body; the server keeps answering."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.vision_fixtures import *  # noqa: F403
from tests.vision_fixtures import wav_bytes

pytestmark = pytest.mark.real_models

IMAGE_ROUTES = [
    "/v1/image-classification",
    "/v1/image-embeddings",
    "/v1/face-detection",
    "/v1/zero-shot-image-classification",
    "/v1/vision/face",
    "/v1/vision/scene",
]
EXTRA = {"/v1/zero-shot-image-classification": {"labels": '["a cat", "a dog"]'}}


def png(width=64, height=48) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)).save(
        buf, format="PNG"
    )
    return buf.getvalue()


def bomb_png(side=50_000) -> bytes:
    """A valid-looking 1 KB PNG whose header claims side x side pixels."""
    raw = zlib.compress(b"\x00" * 64)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def noisy_png_over(limit: int) -> bytes:
    side = int((limit / 3) ** 0.5) + 40
    return png(side, side)


def assert_error(route, response, status):
    assert response.status_code == status, (route, response.get_data(as_text=True))
    body = response.get_json()
    if route.startswith("/v1/vision/"):
        assert body["success"] is False
        assert body["error"]
        assert body["code"] == status
    else:
        assert set(body) == {"error"}
        assert body["error"]["status"] == status
        assert body["error"]["message"]


def post_image(client, route, data: bytes, field="image"):
    form = {field: (io.BytesIO(data), "x.png"), **EXTRA.get(route, {})}
    return client.post(route, data=form, content_type="multipart/form-data")


def still_answers(client, route):
    assert post_image(client, route, png()).status_code == 200


IMAGE_CASES = [
    pytest.param(lambda: png()[: len(png()) // 2], 400, id="truncated-png"),
    pytest.param(lambda: b"\xff\xd8\xff\xe0" + b"\x00" * 40, 400, id="corrupt-jpeg"),
    pytest.param(lambda: b"%PDF-1.4 not an image at all", 415, id="pdf"),
    pytest.param(lambda: b"hello, plain text", 415, id="text"),
    pytest.param(lambda: noisy_png_over(600_000), 413, id="over-upload-bytes"),
    pytest.param(bomb_png, 413, id="decompression-bomb"),
    pytest.param(lambda: png(2000, 1200), 413, id="over-pixel-limit"),
    pytest.param(lambda: b"", 400, id="empty-file"),
]


@pytest.mark.parametrize("route", IMAGE_ROUTES)
@pytest.mark.parametrize(("make", "status"), IMAGE_CASES)
def test_bad_image_uploads(limited_client, route, make, status):
    assert_error(route, post_image(limited_client, route, make()), status)
    still_answers(limited_client, route)


@pytest.mark.parametrize("route", IMAGE_ROUTES)
def test_missing_image_field(limited_client, route):
    status = 400 if route.startswith("/v1/vision/") else 422
    assert_error(route, post_image(limited_client, route, png(), field="picture"), status)
    r = limited_client.post(route, json={"labels": ["a"]} if "zero-shot" in route else {})
    assert_error(route, r, status)
    still_answers(limited_client, route)


@pytest.mark.parametrize("route", IMAGE_ROUTES)
def test_bad_base64_and_content_types(limited_client, route):
    extra = {"labels": ["a cat", "a dog"]} if "zero-shot" in route else {}
    assert_error(route, limited_client.post(route, json={"image": "@@not base64@@", **extra}), 400)
    assert_error(route, limited_client.post(route, json={"image": base64.b64encode(b"text").decode(), **extra}), 415)
    assert_error(route, limited_client.post(route, json={"image": "A" * 900_000, **extra}), 413)
    assert_error(route, limited_client.post(route, data=b"x", content_type="text/plain"), 415)
    assert_error(route, limited_client.post(route, data=b"{oops", content_type="application/json"), 400)
    assert limited_client.post(route, json={"image": base64.b64encode(png()).decode(), **extra}).status_code == 200


def test_too_many_images_is_413(limited_client):
    r = limited_client.post("/v1/image-classification", json={"images": [base64.b64encode(png()).decode()] * 5})
    assert_error("/v1/image-classification", r, 413)


def post_audio(client, data: bytes, field="audio"):
    return client.post(
        "/v1/voice-activity", data={field: (io.BytesIO(data), "a.wav")}, content_type="multipart/form-data"
    )


GOOD_WAV = wav_bytes(np.zeros(16000, np.float32), 16000)
AUDIO_CASES = [
    pytest.param(lambda: GOOD_WAV[:30], 400, id="truncated-header"),
    pytest.param(lambda: GOOD_WAV[:44] + b"\x00", 400, id="truncated-data"),
    pytest.param(lambda: b"ID3\x03\x00" + b"\x00" * 100, 415, id="mp3"),
    pytest.param(lambda: b"OggS" + b"\x00" * 100, 415, id="ogg"),
    pytest.param(lambda: wav_bytes(np.zeros(16000 * 5, np.float32), 16000), 413, id="over-seconds"),
    pytest.param(lambda: wav_bytes(np.zeros(16000 * 19, np.float32), 16000), 413, id="over-bytes"),
    pytest.param(lambda: b"", 400, id="empty"),
]


@pytest.mark.parametrize(("make", "status"), AUDIO_CASES)
def test_bad_audio(limited_client, make, status):
    assert_error("/v1/voice-activity", post_audio(limited_client, make()), status)
    assert post_audio(limited_client, GOOD_WAV).status_code == 200


def test_missing_audio_field(limited_client):
    assert_error("/v1/voice-activity", post_audio(limited_client, GOOD_WAV, field="sound"), 422)
    assert_error("/v1/voice-activity", limited_client.post("/v1/voice-activity", json={}), 422)
    assert (
        limited_client.post("/v1/voice-activity", json={"audio": base64.b64encode(GOOD_WAV).decode()}).status_code
        == 200
    )


@pytest.fixture(scope="module")
def short_clip(videos) -> bytes:
    """The first ~2 s of carphone_pristine.mp4 (176x144), re-muxed: small and under the 3 s limit."""
    import av

    src = av.open(str(videos / "carphone_pristine.mp4"))
    out = io.BytesIO()
    dst = av.open(out, "w", format="mp4")
    stream = dst.add_stream("mpeg4", rate=15)
    stream.width, stream.height, stream.pix_fmt = 176, 144, "yuv420p"
    for i, frame in enumerate(src.decode(video=0)):
        if i >= 60:
            break
        if i % 2 == 0:
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                dst.mux(packet)
    for packet in stream.encode():
        dst.mux(packet)
    dst.close()
    return out.getvalue()


def post_video(client, data: bytes, field="video"):
    return client.post("/v1/video", data={field: (io.BytesIO(data), "v.mp4")}, content_type="multipart/form-data")


def test_short_clip_is_fine(limited_client, short_clip):
    r = post_video(limited_client, short_clip)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["voice_activity"] is None  # no audio track


@pytest.mark.parametrize(
    ("case", "status"),
    [("truncated", 400), ("random", 415), ("too-long", 413), ("too-big", 413), ("empty", 400), ("webm-garbage", 400)],
)
def test_bad_video(limited_client, videos, short_clip, case, status):
    data = {
        "truncated": short_clip[: len(short_clip) // 2],
        "random": np.random.default_rng(0).bytes(5000),
        "too-long": (videos / "bikes.mp4").read_bytes(),  # 10 s (> 3 s limit), 510 kB (< 600 kB limit)
        "too-big": (videos / "bigbuckbunny.mp4").read_bytes(),
        "empty": b"",
        "webm-garbage": b"\x1a\x45\xdf\xa3" + b"\x00" * 200,
    }[case]
    assert_error("/v1/video", post_video(limited_client, data), status)
    assert post_video(limited_client, short_clip).status_code == 200


def test_missing_video_field(limited_client, short_clip):
    assert_error("/v1/video", post_video(limited_client, short_clip, field="clip"), 422)
    assert_error("/v1/video", limited_client.post("/v1/video", data=b"plain", content_type="text/plain"), 415)


# Found by an attack run: each of these used to answer 500.
DEEP = "[" * 20_000 + "]" * 20_000


@pytest.mark.parametrize("route", IMAGE_ROUTES)
def test_deep_nesting_in_json_form_and_query_is_400(limited_client, route):
    image = base64.b64encode(png()).decode()
    nested = '{"image": "' + image + '", "top_k": ' + DEEP + "}"
    assert_error(route, limited_client.post(route, data=nested, content_type="application/json"), 400)
    for option in ("top_k", "min_confidence", "labels"):
        form = {"image": (io.BytesIO(png()), "x.png"), **EXTRA.get(route, {}), option: DEEP}
        r = limited_client.post(route, data=form, content_type="multipart/form-data")
        assert_error(route, r, 400)
    r = limited_client.post(route + "?min_confidence=" + DEEP[:2000], data=png(), content_type="image/png")
    assert r.status_code < 500, r.get_data(as_text=True)
    still_answers(limited_client, route)


def test_null_top_k_with_base64_image_is_the_default(limited_client):
    body = {"image": base64.b64encode(png()).decode(), "top_k": None}
    r = limited_client.post("/v1/image-classification", json=body)
    assert r.status_code == 200, r.get_json()
    assert len(r.get_json()["results"][0]) == 5
