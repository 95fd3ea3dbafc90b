"""Zero-shot image classification: ConSE arithmetic, ConSE on real photos (default models), tiny CLIP."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from edge_mm.errors import Unprocessable
from edge_mm.tasks import zero_shot_image
from edge_mm.tasks.payload import Limits
from tests.vision_fixtures import *  # noqa: F403

LIMITS = Limits(max_text_chars=100, max_items=8)


def test_conse_vector_is_the_weighted_mean_of_the_top_classes():
    table = np.eye(4, dtype=np.float32)
    v = zero_shot_image.conse_vector(np.array([0.6, 0.3, 0.1, 0.0]), table, top_t=2)
    assert v.dtype == np.float32
    np.testing.assert_allclose(v, np.array([2.0, 1.0, 0.0, 0.0]) / np.sqrt(5), rtol=1e-6)
    np.testing.assert_array_equal(zero_shot_image.conse_vector(np.array([0.1, 0.9, 0, 0]), table, 1), table[1])
    # Ties keep the lower class index; top_t beyond the class count takes them all.
    np.testing.assert_allclose(zero_shot_image.conse_vector(np.full(4, 0.25), table, 2), [0.5**0.5, 0.5**0.5, 0, 0])
    np.testing.assert_allclose(zero_shot_image.conse_vector(np.full(4, 0.25), table, 9), [0.5] * 4, rtol=1e-6)


def test_conse_math_takes_tensors_and_numpy_alike():
    """The classifier and text model may serve TorchScript (tensors) or ONNX Runtime (numpy)."""
    logits = np.array([[1.0, 3.0, 0.5]], np.float32)
    np.testing.assert_array_equal(zero_shot_image.as_numpy(torch.from_numpy(logits)), logits)
    assert zero_shot_image.as_numpy(logits) is logits


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"labels": []},
        {"labels": ["a", "a"]},
        {"labels": ["a"], "hypothesis_template": "x"},
        {"labels": ["a"], "top_t": 0},
    ],
)
def test_parse_rejects(payload):
    with pytest.raises(Unprocessable):
        zero_shot_image.parse_options(payload, LIMITS, {})


LABELS = ["a cat", "a car", "a cup of coffee"]


@pytest.mark.real_models
@pytest.mark.parametrize(("photo", "expected"), [("chelsea.png", "a cat"), ("coffee.png", "a cup of coffee")])
def test_conse_on_real_photos(vision_client, photos, photo, expected):
    data = {
        "image": (io.BytesIO((photos / photo).read_bytes()), photo),
        "labels": '["a cat", "a car", "a cup of coffee"]',
    }
    r = vision_client.post("/v1/zero-shot-image-classification", data=data, content_type="multipart/form-data")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["method"] == "conse"
    assert body["model"] == "conse"
    ranked = body["results"][0]
    assert ranked[0]["label"] == expected
    assert abs(sum(x["score"] for x in ranked) - 1) < 1e-4


def test_clip_ranks_with_both_towers(tiny_vision_client, tiny_vision_registry):
    buf = io.BytesIO()
    Image.new("RGB", (48, 40), (200, 30, 30)).save(buf, format="PNG")
    r = tiny_vision_client.post(
        "/v1/zero-shot-image-classification",
        data={"image": (io.BytesIO(buf.getvalue()), "x.png"), "labels": '["the man", "a guitar"]'},
        content_type="multipart/form-data",
    )
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["method"] == "clip"
    assert {x["label"] for x in body["results"][0]} == {"the man", "a guitar"}
    clip = tiny_vision_registry[1].models["tiny-clip"].runner
    img = clip.embed_images([Image.open(io.BytesIO(buf.getvalue())).convert("RGB")])[0]
    text = clip.embed_texts(["a photo of the man.", "a photo of a guitar."])
    sims = {x["label"]: x["similarity"] for x in body["results"][0]}
    assert sims["the man"] == pytest.approx(float(text[0] @ img), abs=1e-5)


@pytest.mark.real_models
def test_conse_calls_the_text_model_and_the_classifier_through_their_own_admission(
    vision_client, vision_registry, photos
):
    """ConSE composes three served models; each call goes through that model's slot (and shows in the headers)."""
    seen = []
    for name in ("minilm", "efficientnet"):
        adm = vision_registry.models[name].admission
        original = adm.slot

        def slot(deadline=None, _orig=original, _name=name):
            seen.append(_name)
            return _orig(deadline)

        adm.slot = slot
    try:
        data = {"image": (io.BytesIO((photos / "chelsea.png").read_bytes()), "c.png"), "labels": '["a cat", "a car"]'}
        r = vision_client.post("/v1/zero-shot-image-classification", data=data, content_type="multipart/form-data")
    finally:
        for name in ("minilm", "efficientnet"):
            del vision_registry.models[name].admission.slot
    assert r.status_code == 200, r.get_json()
    assert seen == ["minilm", "efficientnet"]
    assert r.headers["X-Edge-Model"] == "minilm,efficientnet"
