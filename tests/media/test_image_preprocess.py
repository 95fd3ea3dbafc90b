"""ImagePreprocess: matches the torchvision reference, layout, manifest round trip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edge_mm.media.image_preprocess import (
    EFFICIENTNET_LITE0_PREPROCESS,
    ImagePreprocess,
    SquashPreprocess,
    center_crop_box,
    resized_size,
    to_numpy_rgb,
)
from tests.conftest import need_import

# torchvision on PIL images resizes with the same Pillow call and applies the same
# float32 ops (div 255, sub mean, div std), so the match should be bit-exact; the
# allowance only covers a possible change in float op order (1 ulp near 1.0 ~ 1.2e-7).
TORCHVISION_ATOL = 1e-6

PHOTOS = ["chelsea.png", "coffee.png", "camera.png", "astronaut.png", "rocket.jpg"]


def torchvision_reference(preprocess: ImagePreprocess, image: Image.Image) -> torch.Tensor:
    transforms = need_import("torchvision.transforms", "torchvision is the reference")
    modes = {
        "bicubic": transforms.InterpolationMode.BICUBIC,
        "bilinear": transforms.InterpolationMode.BILINEAR,
    }
    pipeline = transforms.Compose(
        [
            transforms.Resize(preprocess.resize_short, modes[preprocess.interpolation]),
            transforms.CenterCrop(preprocess.crop),
            transforms.ToTensor(),
            transforms.Normalize(preprocess.mean, preprocess.std),
        ]
    )
    return pipeline(image.convert("RGB"))


def open_photo(photo_dir: Path, name: str) -> Image.Image:
    with Image.open(photo_dir / name) as image:
        image.load()
        return image


@pytest.mark.parametrize("name", PHOTOS)
def test_matches_torchvision_on_real_photos(photo_dir: Path, name: str) -> None:
    image = open_photo(photo_dir, name)
    ours = EFFICIENTNET_LITE0_PREPROCESS([image])[0]
    reference = torchvision_reference(EFFICIENTNET_LITE0_PREPROCESS, image)
    assert ours.shape == reference.shape == (3, 224, 224)
    torch.testing.assert_close(ours, reference, atol=TORCHVISION_ATOL, rtol=0)


@pytest.mark.parametrize("size", [(301, 255), (255, 301), (257, 513), (999, 256), (256, 256)])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_matches_torchvision_on_awkward_sizes(
    chelsea_small: Image.Image, size: tuple[int, int], interpolation: str
) -> None:
    # Odd margins exercise CenterCrop's round-half-to-even, truncation of the long side.
    imagenet_mean, imagenet_std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    preprocess = ImagePreprocess(256, 224, imagenet_mean, imagenet_std, interpolation)  # type: ignore[arg-type]
    image = chelsea_small.resize(size)
    reference = torchvision_reference(preprocess, image)
    torch.testing.assert_close(preprocess([image])[0], reference, atol=TORCHVISION_ATOL, rtol=0)


def test_batch_shape_dtype_layout_range(photo_dir: Path) -> None:
    images = [open_photo(photo_dir, name) for name in PHOTOS[:3]]
    batch = EFFICIENTNET_LITE0_PREPROCESS(images)
    assert batch.shape == (3, 3, 224, 224)
    assert batch.dtype == torch.float32
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert batch.min() >= -1.0
    assert batch.max() <= 1.0
    # Batching does not change any image's tensor.
    torch.testing.assert_close(batch[1], EFFICIENTNET_LITE0_PREPROCESS([images[1]])[0])


def test_lite0_scaling_is_minus_one_to_one() -> None:
    black, white = Image.new("RGB", (300, 300)), Image.new("RGB", (300, 300), (255, 255, 255))
    batch = EFFICIENTNET_LITE0_PREPROCESS([black, white])
    assert torch.all(batch[0] == -1.0)
    assert torch.all(batch[1] == 1.0)


def test_resized_size_scales_short_side() -> None:
    assert resized_size(451, 300, 256) == (384, 256)  # int(256 * 451 / 300) = 384
    assert resized_size(300, 451, 256) == (256, 384)
    assert resized_size(100, 100, 256) == (256, 256)


def test_center_crop_box_rounds_half_to_even() -> None:
    assert center_crop_box(256, 256, 224) == (16, 16, 240, 240)
    assert center_crop_box(257, 259, 224) == (16, 18, 240, 242)  # 16.5 -> 16, 17.5 -> 18


def test_to_numpy_rgb() -> None:
    array = to_numpy_rgb(Image.new("L", (5, 3), 7))
    assert array.shape == (3, 5, 3)
    assert array.dtype == np.uint8
    assert array.flags.writeable
    assert np.all(array == 7)


def test_manifest_round_trip() -> None:
    data = json.loads(json.dumps(EFFICIENTNET_LITE0_PREPROCESS.to_dict()))
    assert data == {
        "resize_short": 256,
        "crop": 224,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "interpolation": "bicubic",
    }
    assert ImagePreprocess.from_dict(data) == EFFICIENTNET_LITE0_PREPROCESS


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"crop": 300}, "larger than"),
        ({"resize_short": 0}, "positive"),
        ({"mean": [0.5, 0.5]}, "3 values"),
        ({"std": [0.5, 0.0, 0.5]}, "std must be positive"),
        ({"interpolation": "nearest"}, "interpolation"),
        ({"colour": "rgb"}, "unknown"),
    ],
)
def test_from_dict_rejects_bad_values(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ImagePreprocess.from_dict({**EFFICIENTNET_LITE0_PREPROCESS.to_dict(), **change})


def test_from_dict_requires_fields() -> None:
    with pytest.raises(ValueError, match="missing"):
        ImagePreprocess.from_dict({"crop": 224})


def test_empty_batch_is_an_error() -> None:
    with pytest.raises(ValueError, match="no images"):
        EFFICIENTNET_LITE0_PREPROCESS([])


@pytest.mark.parametrize("name", PHOTOS)
def test_numpy_path_equals_the_torch_path(photo_dir: Path, name: str) -> None:
    """ONNX Runtime's input (numpy, NCHW, no torch) holds the torch path's numbers, on real photos and squashed."""
    image = open_photo(photo_dir, name)
    squash = SquashPreprocess(48, 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    for pre in (EFFICIENTNET_LITE0_PREPROCESS, squash):
        got, want = pre.array([image, image.rotate(90, expand=True)]), pre([image, image.rotate(90, expand=True)])
        assert isinstance(got, np.ndarray)
        assert got.dtype == np.float32
        assert got.flags["C_CONTIGUOUS"]
        assert got.shape == tuple(want.shape)
        np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-5)


def test_numpy_path_refuses_an_empty_batch() -> None:
    with pytest.raises(ValueError, match="no images"):
        EFFICIENTNET_LITE0_PREPROCESS.array([])


def test_runtime_media_modules_do_not_import_build_only_packages() -> None:
    code = (
        "import sys, edge_mm.media.images, edge_mm.media.image_preprocess\n"
        "heavy = {'torch', 'torchvision', 'transformers', 'skimage'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
