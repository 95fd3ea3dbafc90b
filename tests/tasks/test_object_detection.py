"""Object detection: DETR-style post-processing with exact answers; a tiny random YOLOS through the routes."""

from __future__ import annotations

import io

import torch
from PIL import Image

from edge_mm.runtime.mtcnn import Face
from edge_mm.tasks import deepstack, object_detection
from tests.vision_fixtures import *  # noqa: F403


def test_postprocess_boxes_in_pixels_sorted_and_filtered():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.85, 0.05], [0.1, 0.1, 0.8]]))  # last = no object
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 1.0, 1.0]])
    out = object_detection.postprocess(logits, boxes, 200, 100, ["person", "car"], 0.5, 10)
    assert [p["label"] for p in out] == ["car", "person"]
    assert out[0] == {"label": "car", "confidence": 0.85, "x_min": 0, "y_min": 0, "x_max": 60, "y_max": 30}
    assert out[1]["x_min"] == 80
    assert out[1]["x_max"] == 120
    assert out[1]["y_min"] == 30
    assert out[1]["y_max"] == 70
    assert len(object_detection.postprocess(logits, boxes, 200, 100, ["person", "car"], 0.0, 1)) == 1


def test_deepstack_face_predictions_sorted_capped_filtered():
    faces = [Face((1.2, 2, 3, 4), c, ((0, 0),) * 5) for c in (0.5, 0.99, 0.3, 0.8)]
    preds = deepstack.face_predictions(faces, 0.4, limit=2)
    assert [p["confidence"] for p in preds] == [0.99, 0.8]
    assert preds[0] == {"label": "face", "confidence": 0.99, "x_min": 1, "y_min": 2, "x_max": 3, "y_max": 4}


def test_tiny_yolos_detection_route(tiny_vision_client):
    buf = io.BytesIO()
    Image.new("RGB", (120, 80), (10, 200, 30)).save(buf, format="JPEG")
    r = tiny_vision_client.post(
        "/v1/vision/detection",
        data={"image": (io.BytesIO(buf.getvalue()), "x.jpg"), "min_confidence": "0"},
        content_type="multipart/form-data",
    )
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["success"] is True
    assert 0 < len(body["predictions"]) <= 5
    confs = [p["confidence"] for p in body["predictions"]]
    assert confs == sorted(confs, reverse=True)
    for p in body["predictions"]:
        assert p["label"] in ("person", "car")
        assert 0 <= p["x_min"] <= p["x_max"] <= 120
        assert 0 <= p["y_min"] <= p["y_max"] <= 80
