"""The native detection route, POST /v1/object-detection, and its Open Inference contract, on tiny
YOLOv5/YOLOv8 graphs with known boxes (tests/yolo_models.py): the same boxes as DeepStack's route,
the model's confidence default from settings, a label filter, several images, bad input as 4xx."""

from __future__ import annotations

import base64
import io

import pytest

from tests.conftest import test_client, warm_registry
from tests.yolo_models import EXPECTED, build_yolo, test_image, yolo_onnx

IMAGE = base64.b64encode(test_image()).decode()


@pytest.fixture(scope="module")
def client(tmp_path_factory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("detection-api")
    settings = build_yolo(
        folder,
        {
            "v5": (yolo_onnx(folder / "v5.onnx", "yolov5"), ""),
            "v8": (yolo_onnx(folder / "v8.onnx", "yolov8"), "options = { min_confidence = 0.65 }"),
        },
    )
    return test_client(settings, warm_registry(settings))


def detect(client, **body):  # type: ignore[no-untyped-def]
    return client.post("/v1/object-detection", json={"image": IMAGE, **body})


def as_tuples(objects):  # type: ignore[no-untyped-def]
    return [(o["label"], o["score"], tuple(o["box"].values())) for o in objects]


def test_boxes_in_pixels_equal_deepstacks_for_the_same_model(client):
    r = detect(client, model="v5", min_confidence=0.4)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["model"] == "v5"
    (result,) = body["results"]
    assert (result["width"], result["height"]) == (640, 480)
    assert as_tuples(result["objects"]) == EXPECTED
    upload = {"image": (io.BytesIO(test_image()), "a.png"), "min_confidence": "0.4"}
    deepstack = client.post("/v1/vision/detection", data=upload, content_type="multipart/form-data").get_json()
    assert [(p["label"], p["confidence"]) for p in deepstack["predictions"]] == [(o[0], o[1]) for o in EXPECTED]


def test_confidence_default_is_the_models_and_a_request_overrides_it(client):
    objects = detect(client, model="v8").get_json()["results"][0]["objects"]
    assert as_tuples(objects) == EXPECTED[:2]  # settings: min_confidence = 0.65
    objects = detect(client, model="v8", min_confidence=0.5).get_json()["results"][0]["objects"]
    assert as_tuples(objects) == EXPECTED


def test_label_filter_limit_and_several_images(client):
    cars = detect(client, model="v5", labels=["car"]).get_json()["results"][0]["objects"]
    assert [o["label"] for o in cars] == ["car", "car"]
    one = detect(client, model="v5", max_objects=1).get_json()["results"][0]["objects"]
    assert as_tuples(one) == EXPECTED[:1]
    body = client.post("/v1/object-detection", json={"images": [IMAGE, IMAGE], "model": "v5"}).get_json()
    assert [len(r["objects"]) for r in body["results"]] == [3, 3]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"labels": ["unicorn"]}, 400, "unicorn"),
        ({"min_confidence": 1.5}, 422, "min_confidence"),
        ({"max_objects": 0}, 422, "max_objects"),
        ({"model": "nope"}, 404, "nope"),
        ({"image": "not base64!"}, 400, "image"),
    ],
)
def test_bad_input_is_a_4xx_that_names_it(client, body, status, words):
    r = detect(client, **body)
    assert r.status_code == status, r.get_json()
    assert words in str(r.get_json()).lower()


def test_open_inference_contract_equals_the_native_route(client):
    image = {"name": "image", "datatype": "BYTES", "shape": [2], "data": [IMAGE, IMAGE]}
    r = client.post("/v2/models/v5/infer", json={"inputs": [image], "parameters": {"min_confidence": 0.4}})
    assert r.status_code == 200, r.get_data(as_text=True)
    out = {o["name"]: o for o in r.get_json()["outputs"]}
    assert out["boxes"]["shape"] == [6, 4]
    assert out["boxes"]["data"][:4] == [100, 80, 300, 240]
    assert out["labels"]["data"] == [e[0] for e in EXPECTED] * 2
    assert out["scores"]["data"] == pytest.approx([e[1] for e in EXPECTED] * 2)
    assert out["image_index"]["data"] == [0, 0, 0, 1, 1, 1]
    meta = client.get("/v2/models/v5").get_json()
    assert [o["name"] for o in meta["outputs"]] == ["boxes", "labels", "scores", "image_index"]
