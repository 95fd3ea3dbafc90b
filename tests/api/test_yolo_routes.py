"""Your own detectors over HTTP: CodeProject.AI's /v1/vision/custom/{model} and DeepStack's
/v1/vision/detection with tiny YOLOv5 and YOLOv8 graphs of known boxes; bad input answers 4xx in
DeepStack's error shape."""

from __future__ import annotations

import io

import pytest

from tests.conftest import test_client, warm_registry
from tests.yolo_models import EXPECTED, build_yolo, test_image, yolo_onnx


@pytest.fixture(scope="module")
def client(tmp_path_factory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("yolo-api")
    (folder / "src").mkdir()
    (folder / "src" / "labels.txt").write_text("worker\nforklift\npallet\n")
    settings = build_yolo(
        folder,
        {
            "v5": (yolo_onnx(folder / "src" / "v5.onnx", "yolov5"), ""),
            "v8": (yolo_onnx(folder / "src" / "v8.onnx", "yolov8"), "options = { min_confidence = 0.65 }"),
            "half": (
                yolo_onnx(folder / "src" / "half" / "v5.onnx", "yolov5", names=None, half=True),
                'options = { labels = "../labels.txt", iou_threshold = 0.95, max_detections = 3 }',
            ),
        },
    )
    return test_client(settings, warm_registry(settings))


def post(client, route, **fields):  # type: ignore[no-untyped-def]
    data = {"image": (io.BytesIO(test_image()), "a.png"), **fields}
    return client.post(route, data=data, content_type="multipart/form-data")


def as_tuples(preds):  # type: ignore[no-untyped-def]
    return [(p["label"], p["confidence"], (p["x_min"], p["y_min"], p["x_max"], p["y_max"])) for p in preds]


def test_custom_route_answers_as_codeproject_ai(client):
    r = post(client, "/v1/vision/custom/v5")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["success"] is True
    assert as_tuples(body["predictions"]) == EXPECTED
    assert body["count"] == 3
    assert body["message"] == "Found person, car..."
    assert isinstance(body["inferenceMs"], int)
    assert isinstance(body["processMs"], int)


def test_min_confidence_from_the_form_and_from_settings(client):
    assert (
        as_tuples(post(client, "/v1/vision/custom/v5", min_confidence="0.65").get_json()["predictions"]) == EXPECTED[:2]
    )
    assert as_tuples(post(client, "/v1/vision/custom/v8").get_json()["predictions"]) == EXPECTED[:2]  # settings: 0.65
    body = post(client, "/v1/vision/custom/v8", min_confidence="0.95").get_json()
    assert (body["count"], body["message"]) == (0, "No objects found")


def test_deepstack_detection_serves_a_yolo_model(client):
    r = post(client, "/v1/vision/detection")
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["success"] is True
    assert as_tuples(r.get_json()["predictions"]) == EXPECTED


@pytest.mark.parametrize(
    ("route", "fields", "status"),
    [
        ("/v1/vision/custom/nope", {}, 404),
        ("/v1/vision/custom/v5", {"min_confidence": "2"}, 400),
    ],
)
def test_bad_input_is_4xx_in_deepstack_shape(client, route, fields, status):
    r = post(client, route, **fields)
    assert r.status_code == status
    body = r.get_json()
    assert body["success"] is False
    assert body["code"] == status
    assert body["error"]


def test_missing_image_is_400(client):
    r = client.post("/v1/vision/custom/v5", data={"min_confidence": "0.5"}, content_type="multipart/form-data")
    assert r.status_code == 400
    assert r.get_json()["success"] is False


def test_openapi_describes_the_path_parameter(client):
    op = client.get("/openapi.json").get_json()["paths"]["/v1/vision/custom/{model}"]["post"]
    assert op["parameters"] == [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("vision-custom.Answer")


def test_a_half_export_with_a_labels_file_and_its_own_nms_settings(client):
    body = post(client, "/v1/vision/custom/half").get_json()
    # iou_threshold 0.95 keeps the duplicate worker; max_detections 3 cuts the list there
    assert [(p["label"], round(p["confidence"], 3)) for p in body["predictions"]] == [
        ("worker", 0.9),
        ("worker", 0.8),
        ("forklift", 0.7),
    ]
    assert (body["predictions"][0]["x_min"], body["predictions"][0]["y_max"]) == (100, 240)


def test_models_and_info_list_the_yolo_models(client):
    models = client.get("/v1/models")
    assert models.status_code == 200
    (v5,) = [m for m in models.get_json()["models"] if m["name"] == "v5"]
    assert v5["task"] == "yolo-detection"
    assert v5["routes"] == ["object-detection", "vision/custom/<model>", "vision/detection"]
    info = client.get("/info")
    assert info.status_code == 200
    assert info.get_json()["models"]["v5"]["provider"] == "CPUExecutionProvider"
