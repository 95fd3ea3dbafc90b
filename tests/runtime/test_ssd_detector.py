"""The SSD runner without TensorFlow: box conversion, COCO ids with gaps, a stand-in ONNX graph with the
TF API's four outputs through the runner, the threshold and labels filter, and DeepStack's route."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edge_mm.runtime.onnx_session import OnnxSession
from edge_mm.runtime.ssd_detector import COCO_NAMES, SsdDetector, image_tensor, label_for, labels_by_id, to_pixels
from tests.ssd_models import EXPECTED, build_ssd, fake_tf_env, ssd_onnx, test_image


def as_tuples(preds):  # type: ignore[no-untyped-def]
    return [(p["label"], p["confidence"], (p["x_min"], p["y_min"], p["x_max"], p["y_max"])) for p in preds]


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):  # type: ignore[no-untyped-def]
    return ssd_onnx(tmp_path_factory.mktemp("ssd") / "model.onnx")


def test_relative_yxyx_boxes_become_clipped_pixel_xyxy():
    got = to_pixels(np.array([[0.25, 0.5, 0.75, 1.0], [-0.1, 0.0, 1.2, 0.5]]), 640, 480)
    assert got.tolist() == [[320, 120, 640, 360], [0, 0, 320, 480]]


def test_coco_table_has_80_names_at_the_tf_api_ids_with_gaps():
    labels = labels_by_id(COCO_NAMES)
    assert len(COCO_NAMES) == 80
    assert len(labels) == 91
    assert (labels[1], labels[17], labels[18], labels[44], labels[47], labels[90]) == (
        "person", "cat", "dog", "bottle", "cup", "toothbrush"
    )  # fmt: skip
    gaps = [i for i in range(1, 91) if not labels[i]]
    assert gaps == [12, 26, 29, 30, 45, 66, 68, 69, 71, 83]
    assert label_for(labels, 12) == "class_12"
    assert label_for(labels, 0) == "class_0"
    assert label_for(labels, 99) == "class_99"
    assert label_for(labels, 4) == "motorcycle"


def test_image_tensor_is_uint8_nhwc_rgb():
    x = image_tensor(Image.new("L", (5, 3), 7))
    assert x.shape == (1, 3, 5, 3)
    assert x.dtype == np.uint8


def test_the_runner_on_a_stand_in_graph(stand_in):
    detector = SsdDetector("coco", None, OnnxSession(stand_in, 1), labels_by_id(COCO_NAMES))
    image = Image.open(io.BytesIO(test_image()))
    assert as_tuples(detector.predictions(image, min_confidence=0.4)) == EXPECTED
    assert as_tuples(detector.predictions(image, min_confidence=0.4, limit=1)) == EXPECTED[:1]
    assert as_tuples(detector.predictions(image, min_confidence=0.4, only={"cat"})) == EXPECTED[1:2]
    low = detector.predictions(image, min_confidence=0.0)
    assert [p["label"] for p in low] == ["person", "cat", "class_12", "dog"]  # the 5th row is past num_detections
    assert detector.warm() > 0


@pytest.fixture(scope="module")
def served(tmp_path_factory, stand_in):  # type: ignore[no-untyped-def]
    from tests.conftest import test_client, warm_registry

    folder = tmp_path_factory.mktemp("ssd-served")
    graph = folder / "frozen_inference_graph.pb"
    graph.write_bytes(b"a stand-in: the conversion is replaced")
    with pytest.MonkeyPatch.context() as mp:
        fake_tf_env(mp, stand_in)
        settings = build_ssd(folder, graph, 'options = { labels = ["person", "cat"], min_confidence = 0.55 }')
    return test_client(settings, warm_registry(settings))


def detect(client, **fields):  # type: ignore[no-untyped-def]
    data = {"image": (io.BytesIO(test_image()), "a.png"), **fields}
    r = client.post("/v1/vision/detection", data=data, content_type="multipart/form-data")
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_deepstack_detection_answers_coco_names_with_the_models_filter_and_floor(served):
    body = detect(served, min_confidence="0.1")  # the model's floor, 0.55, wins; its labels drop class_12
    assert body["success"] is True
    assert as_tuples(body["predictions"]) == EXPECTED[:2]
    assert as_tuples(detect(served, min_confidence="0.7")["predictions"]) == EXPECTED[:1]


def test_labels_that_are_not_coco_names_are_refused_at_start_up():
    from edge_mm.errors import ConfigError
    from edge_mm.runtime.options import serve_time
    from edge_mm.tasks.table import OPTIONS

    with pytest.raises(ConfigError, match="persn"):
        serve_time("coco", "ssd-detection", {"labels": ["persn"]}, OPTIONS["ssd-detection"])
