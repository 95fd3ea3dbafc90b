"""Face detection task: option parsing, the real MTCNN artifacts on real photos, scaling of large images."""

from __future__ import annotations

import pytest
from PIL import Image

from edge_mm.errors import Unprocessable
from edge_mm.tasks import face_detection
from tests.vision_fixtures import *  # noqa: F403

DEFAULT = face_detection.parse_options({}, {})


def test_parse_defaults_and_overrides():
    assert DEFAULT.thresholds == (0.6, 0.7, 0.7)
    assert DEFAULT.min_face_size == 20
    req = face_detection.parse_options({"threshold": 0.9, "min_face_size": 40}, {"max_side": 640})
    assert req.thresholds == (0.6, 0.7, 0.9)
    assert req.min_face_size == 40
    assert req.max_side == 640
    assert face_detection.parse_options({"thresholds": [0.5, 0.5, 0.5]}, {}).thresholds == (0.5, 0.5, 0.5)


@pytest.mark.parametrize(
    "payload",
    [
        {"threshold": 2},
        {"thresholds": [0.5]},
        {"thresholds": "x"},
        {"min_face_size": 1},
        {"max_side": 10},
        {"min_confidence": -1},
    ],
)
def test_parse_rejects(payload):
    with pytest.raises(Unprocessable):
        face_detection.parse_options(payload, {})


@pytest.fixture(scope="module")
def detector(vision_registry):
    return vision_registry.models["mtcnn"].runner


@pytest.mark.real_models
def test_astronaut_has_one_face_around_her_face(detector, photos):
    image = Image.open(photos / "astronaut.png").convert("RGB")
    (result,) = face_detection.find_faces(detector, [image], DEFAULT)["results"]
    assert (result["width"], result["height"]) == (512, 512)
    (face,) = result["faces"]
    box = face["box"]
    # Her face spans about x 180-270, y 60-175 in the 512x512 photo.
    assert 160 < box["x_min"] < 200
    assert 250 < box["x_max"] < 290
    assert 40 < box["y_min"] < 90
    assert 150 < box["y_max"] < 200
    assert face["confidence"] > 0.99
    for x, y in face["landmarks"].values():
        assert box["x_min"] <= x <= box["x_max"]
        assert box["y_min"] <= y <= box["y_max"]
    assert face["landmarks"]["left_eye"][0] < face["landmarks"]["right_eye"][0]


@pytest.mark.real_models
@pytest.mark.parametrize("name", ["chelsea.png", "coffee.png"])
def test_no_face_in_cat_or_coffee(detector, photos, name):
    image = Image.open(photos / name).convert("RGB")
    assert face_detection.find_faces(detector, [image], DEFAULT)["results"][0]["faces"] == []


@pytest.mark.real_models
def test_large_images_are_searched_scaled_down_and_boxes_scaled_back(detector, photos):
    image = Image.open(photos / "astronaut.png").convert("RGB").resize((1024, 1024))
    full = face_detection.detect(detector, image, face_detection.parse_options({"max_side": 2048}, {}))
    small = face_detection.detect(detector, image, face_detection.parse_options({"max_side": 512}, {}))
    assert len(full) == len(small) == 1
    assert max(abs(a - b) for a, b in zip(full[0].box, small[0].box, strict=True)) < 20  # px in the 1024 image
