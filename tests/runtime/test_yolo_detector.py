"""The YOLO runner's plain functions with exact answers: letterbox geometry, both heads' decoding,
class-wise NMS, the confidence threshold, and Ultralytics' ``names`` metadata read safely."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edge_mm.errors import ConfigError
from edge_mm.runtime.yolo_detector import (
    PAD_VALUE,
    YoloDetector,
    classwise_nms,
    decode,
    head_layout,
    letterbox,
    nms,
    parse_names,
)
from tests.yolo_models import EXPECTED, INPUT, NAMES, head_array, test_image


def detector(head: str, labels: list[str] | None = None) -> YoloDetector:
    out = head_array(head)
    return YoloDetector("tiny", None, lambda x: out, labels or list(NAMES.values()), INPUT, INPUT, head)  # type: ignore[arg-type]


def as_tuples(preds):  # type: ignore[no-untyped-def]
    return [(p["label"], p["confidence"], (p["x_min"], p["y_min"], p["x_max"], p["y_max"])) for p in preds]


def test_letterbox_keeps_aspect_and_pads_grey():
    image = Image.new("RGB", (640, 480), (255, 0, 0))
    x, box = letterbox(image, 320, 320)
    assert x.shape == (1, 3, 320, 320)
    assert x.dtype == np.float32
    assert (box.scale, box.pad_x, box.pad_y) == (0.5, 0, 40)
    assert np.allclose(x[0, :, :40], PAD_VALUE / 255)
    assert np.allclose(x[0, :, 280:], PAD_VALUE / 255)
    assert np.allclose(x[0, :, 40:280], np.array([1.0, 0.0, 0.0])[:, None, None])  # RGB order, / 255


def test_letterbox_of_a_tall_image_pads_left_and_right():
    _, box = letterbox(Image.new("RGB", (200, 400)), 320, 320)
    assert (box.scale, box.pad_x, box.pad_y) == (0.8, 80, 0)


@pytest.mark.parametrize("head", ["yolov5", "yolov8"])
def test_boxes_come_back_in_image_pixels_with_nms_and_threshold(head):
    image = Image.open(io.BytesIO(test_image()))
    assert as_tuples(detector(head).predictions(image, min_confidence=0.4)) == EXPECTED


@pytest.mark.parametrize("head", ["yolov5", "yolov8"])
def test_threshold_and_limit(head):
    image = Image.open(io.BytesIO(test_image()))
    assert as_tuples(detector(head).predictions(image, min_confidence=0.65)) == EXPECTED[:2]
    assert as_tuples(detector(head).predictions(image, min_confidence=0.4, limit=1)) == EXPECTED[:1]
    low = detector(head).predictions(image, min_confidence=0.05)
    assert ("dog", 0.1) in [(p["label"], round(p["confidence"], 5)) for p in low]  # v5: 0.5 objectness x 0.2


def test_without_nms_the_duplicate_would_stay():
    boxes, scores, classes = decode(head_array("yolov5")[0], "yolov5")
    keep = scores >= 0.4
    assert keep.sum() == 4  # person twice, car twice
    assert len(classwise_nms(boxes[keep], scores[keep], classes[keep], 0.45)) == 3
    assert len(nms(boxes[keep], scores[keep], 0.45)) == 2  # class-blind NMS would drop the car on the person too


def test_unknown_class_index_gets_a_placeholder_label():
    image = Image.open(io.BytesIO(test_image()))
    labels = [p["label"] for p in detector("yolov8", ["person"]).predictions(image, min_confidence=0.4)]
    assert labels == ["person", "class_1", "class_1"]


@pytest.mark.parametrize(
    ("shape", "classes", "head"),
    [
        ([1, 25200, 85], 80, "yolov5"),
        ([1, 84, 8400], 80, "yolov8"),
        ([1, 25200, 85], None, "yolov5"),
        ([1, 84, 8400], None, "yolov8"),
    ],
)
def test_head_layout(shape, classes, head):
    assert head_layout(shape, classes) == head


@pytest.mark.parametrize(
    ("shape", "classes"), [([1, 8400, 84], 3), ([8400, 84], 80), ([2, 84, 8400], 80), ([1, 84, "N"], 80)]
)
def test_a_wrong_head_names_the_expected_shapes(shape, classes):
    with pytest.raises(ConfigError, match=r"\[1, N, 5\+C\] \(YOLOv5\) or \[1, 4\+C, N\] \(YOLOv8/11\)"):
        head_layout(shape, classes)


def test_names_metadata_as_ultralytics_writes_it():
    assert parse_names("{0: 'person', 1: 'car', 2: 'traffic light'}") == ["person", "car", "traffic light"]
    assert parse_names("['a', 'b']") == ["a", "b"]


@pytest.mark.parametrize(
    "text", ["__import__('os').system('true')", "{1: 'a'}", "{0: 'a', 2: 'b'}", "not python", "42"]
)
def test_bad_names_metadata_is_refused_without_running_it(text):
    with pytest.raises(ConfigError, match="names"):
        parse_names(text)


TORCH_FREE_SERVE = """\
import io, sys


class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError(f"{name} imported on the yolo-detection serving path")
        return None


sys.meta_path.insert(0, BlockTorch())
from edge_mm.config import load_settings
from tests.conftest import test_client, warm_registry
from tests.yolo_models import test_image

settings = load_settings(sys.argv[1], env={})
client = test_client(settings, warm_registry(settings))
for route in ("/v1/vision/custom/v8", "/v1/vision/detection"):
    r = client.post(route, data={"image": (io.BytesIO(test_image()), "a.png")}, content_type="multipart/form-data")
    assert r.status_code == 200, r.get_json()
    print(r.get_json()["predictions"][0]["label"])
"""


def test_serving_a_yolo_model_never_imports_torch(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.yolo_models import build_yolo, yolo_onnx

    settings = build_yolo(tmp_path, {"v8": (yolo_onnx(tmp_path / "src" / "v8.onnx", "yolov8"), "")})
    done = subprocess.run(
        [sys.executable, "-c", TORCH_FREE_SERVE, str(tmp_path / "settings.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["person", "person"]
    assert settings.models[0].task == "yolo-detection"
