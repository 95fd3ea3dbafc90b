"""Image classification and embeddings: exact post-processing; the real EfficientNet-Lite0 on real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from edge_mm.errors import Unprocessable
from edge_mm.tasks import image_classification, image_embeddings
from tests.vision_fixtures import *  # noqa: F403


def test_top_labels_sorted_with_indices():
    out = image_classification.top_labels(torch.tensor([0.0, 2.0, 1.0]), ["a", "b", "c"], 2)
    assert [r["label"] for r in out] == ["b", "c"]
    assert [r["index"] for r in out] == [1, 2]
    assert out[0]["score"] > out[1]["score"]
    assert abs(sum(r["score"] for r in image_classification.top_labels(torch.zeros(3), ["a", "b", "c"], 3)) - 1) < 1e-5


@pytest.mark.parametrize("logits", [[0.0, 2.0, 1.0, 2.0 - 1e-3], [3.0, -1.0, 0.5, 0.25], [0.0, 0.1, 0.2, 1.0]])
def test_top_labels_numpy_path_equals_the_torch_path(logits):
    """ONNX Runtime's numpy logits are ranked and scored as torch ranks and scores tensors (no torch needed)."""
    labels = ["a", "b", "c", "d"]
    got = image_classification.top_labels(np.asarray(logits, np.float32), labels, 3)
    want = image_classification.top_labels(torch.tensor(logits), labels, 3)
    assert [r["index"] for r in got] == [r["index"] for r in want]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in want], abs=2e-6)


def test_image_embeddings_numpy_path_equals_the_torch_path():
    f = np.asarray([3.0, -4.0, 0.0, 12.0], np.float32)
    np.testing.assert_allclose(image_embeddings.normalise(f), image_embeddings.normalise(torch.from_numpy(f)).numpy())
    np.testing.assert_array_equal(image_embeddings.normalise(np.zeros(3, np.float32)), np.zeros(3))


@pytest.mark.parametrize("top_k", [0, 11, "3", True])
def test_bad_top_k(top_k):
    with pytest.raises(Unprocessable):
        image_classification.parse_top_k({"top_k": top_k}, 10)


def test_default_top_k_is_capped_by_label_count():
    assert image_classification.parse_top_k({}, 3, default=5) == 3


@pytest.fixture(scope="module")
def classifier(vision_registry):
    return vision_registry.models["efficientnet"].runner


def labels_of(classifier, photo, k=3):
    return [r["label"] for r in image_classification.classify(classifier, [photo], k)["results"][0]]


@pytest.mark.real_models
def test_cat_coffee_camera(classifier, photos):
    open_ = lambda n: Image.open(photos / n).convert("RGB")  # noqa: E731
    assert {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"} & set(
        labels_of(classifier, open_("chelsea.png"))
    )
    assert labels_of(classifier, open_("coffee.png"))[0] in ("espresso", "cup", "coffee mug")
    assert "tripod" in labels_of(classifier, open_("camera.png"))


@pytest.mark.real_models
def test_batch_equals_single(classifier, photos):
    images = [Image.open(photos / n).convert("RGB") for n in ("chelsea.png", "coffee.png", "camera.png")]
    together = classifier.classify(images)
    for image, (logits, features) in zip(images, together, strict=True):
        ((alone_logits, alone_features),) = classifier.classify([image])
        # numpy when EfficientNet runs on ONNX Runtime (the build's choice), torch tensors on TorchScript
        np.testing.assert_allclose(np.asarray(logits), np.asarray(alone_logits), atol=1e-4)
        np.testing.assert_allclose(np.asarray(features), np.asarray(alone_features), atol=1e-4)


@pytest.mark.real_models
def test_embeddings_are_unit_vectors_and_similar_for_the_same_scene(classifier, photos):
    cat = Image.open(photos / "chelsea.png").convert("RGB")
    coffee = Image.open(photos / "coffee.png").convert("RGB")
    body = image_embeddings.embed(classifier, [cat, ImageOps.mirror(cat), coffee])
    assert body["dim"] == 1280
    v = torch.tensor([d["embedding"] for d in body["data"]])
    assert torch.allclose(v.norm(dim=-1), torch.ones(3), atol=1e-4)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2
