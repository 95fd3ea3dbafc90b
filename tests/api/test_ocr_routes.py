"""OCR over HTTP: /v1/ocr (JSON base64 and multipart) and CodeProject.AI's /v1/vision/ocr, with the
real PP-OCRv6 graphs; bad input answers 4xx JSON in each route's dialect."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from edge_mm.build.ocr import render_text
from tests.conftest import test_client
from tests.ocr_fixtures import *  # noqa: F403

pytestmark = pytest.mark.real_models
LINES = ["KA-4721", "Edge inference, offline."]


@pytest.fixture(scope="module")
def client(ocr_settings, ocr_registry):  # type: ignore[no-untyped-def]
    return test_client(ocr_settings, ocr_registry)


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def sample() -> bytes:
    return png(render_text(LINES))


def test_json_base64(client, sample):
    r = client.post("/v1/ocr", json={"image": base64.b64encode(sample).decode()})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["model"] == "ppocr"
    (result,) = body["results"]
    assert (result["width"], result["height"]) == (900, 420)
    assert result["text"] == "\n".join(LINES)
    assert [line["text"] for line in result["lines"]] == LINES
    plate = result["lines"][0]
    assert plate["score"] > 0.95
    assert len(plate["box"]) == 4
    assert all(len(p) == 2 for p in plate["box"])
    assert 30 < plate["box"][0][0] < 45  # drawn at x = 40


def test_multipart_and_options(client, sample):
    data = {"image": (io.BytesIO(sample), "a.png"), "max_lines": "1"}
    r = client.post("/v1/ocr", data=data, content_type="multipart/form-data")
    assert r.status_code == 200, r.get_json()
    assert [line["text"] for line in r.get_json()["results"][0]["lines"]] == LINES[:1]


def test_min_score_one_leaves_out_imperfect_lines(client, sample):
    r = client.post("/v1/ocr", json={"image": base64.b64encode(sample).decode(), "min_score": 1.0})
    assert all(line["score"] >= 1.0 for line in r.get_json()["results"][0]["lines"])


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({}, 422),  # no image
        ({"image": "not base64!"}, 400),
        ({"image": base64.b64encode(b"not an image").decode()}, 415),
        ({"image": "SAMPLE", "max_lines": 0}, 422),
        ({"image": "SAMPLE", "min_score": 2}, 422),
        ({"image": "SAMPLE", "max_side": 10}, 422),
        ({"image": "SAMPLE", "model": "nope"}, 404),
    ],
)
def test_bad_input_is_4xx_json(client, sample, payload, status):
    if payload.get("image") == "SAMPLE":
        payload = {**payload, "image": base64.b64encode(sample).decode()}
    r = client.post("/v1/ocr", json=payload)
    assert 400 <= r.status_code < 500
    assert r.status_code == status, r.get_json()
    assert r.get_json()["error"]


def test_codeproject_vision_ocr(client, sample):
    r = client.post("/v1/vision/ocr", data={"image": (io.BytesIO(sample), "a.png")}, content_type="multipart/form-data")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["success"] is True
    assert isinstance(body["inferenceMs"], int)
    assert [p["label"] for p in body["predictions"]] == LINES
    plate = body["predictions"][0]
    assert all(isinstance(plate[k], int) for k in ("x_min", "y_min", "x_max", "y_max"))
    assert plate["x_min"] < plate["x_max"]
    assert plate["y_min"] < plate["y_max"]
    assert 0.95 < plate["confidence"] <= 1


def test_codeproject_vision_ocr_bad_input(client, sample):
    r = client.post("/v1/vision/ocr", data={"nope": "x"}, content_type="multipart/form-data")
    assert r.status_code == 400
    assert r.get_json()["success"] is False
    two = {"image": [(io.BytesIO(sample), "a.png"), (io.BytesIO(sample), "b.png")]}
    r = client.post("/v1/vision/ocr", data=two, content_type="multipart/form-data")
    assert r.status_code == 400
    assert r.get_json()["success"] is False


def test_models_list_shows_ocr_routes(client):
    models = {m["name"]: m for m in client.get("/v1/models").get_json()["models"]}
    assert models["ppocr"]["routes"] == ["ocr", "vision/ocr"]


def test_open_inference_protocol(client, sample):
    image = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(sample).decode()]}
    r = client.post("/v2/models/ppocr/infer", json={"inputs": [image]})
    assert r.status_code == 200, r.get_json()
    out = {o["name"]: o for o in r.get_json()["outputs"]}
    assert out["texts"]["data"] == LINES
    assert out["boxes"]["shape"] == [2, 4, 2]
    assert out["image_index"]["data"] == [0, 0]
    meta = client.get("/v2/models/ppocr").get_json()
    assert [o["name"] for o in meta["outputs"]] == ["texts", "scores", "boxes", "image_index"]
