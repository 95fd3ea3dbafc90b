"""Image preprocessing as recorded in the manifest -> a callable ``images -> (N, 3, H, W)``.

Two modes cover the checkpoints we build:

- ``crop``: resize the short side, centre crop (EfficientNet, torchvision, CLIP, ConvNeXt):
  :class:`ImagePreprocess`.
- ``squash``: resize to exactly ``height`` x ``width`` ignoring aspect (ViT-style HF processors):
  :class:`SquashPreprocess`.

Both scale to [0, 1], then ``(x - mean) / std``, and return channels-last float32.

Runtime code: torch, numpy and Pillow only. The arithmetic reproduces torchvision's
``Resize(resize_short) + CenterCrop(crop) + ToTensor() + Normalize(mean, std)`` on
PIL images (same Pillow resize call, same rounding, same float operations), so a
model traced with the torchvision pipeline at build time sees identical inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

Interpolation = Literal["bicubic", "bilinear"]

_RESAMPLE: dict[str, Image.Resampling] = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
}


def to_numpy_rgb(image: Image.Image) -> np.ndarray:
    """PIL image (any mode) -> ``(H, W, 3)`` uint8 array, a writable copy."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.array(image, dtype=np.uint8)


def resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """``(width, height)`` after scaling the short side to ``short`` px (long side truncated).

    Same rule as torchvision's ``Resize(int)``.
    """
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def center_crop_box(width: int, height: int, crop: int) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the centred ``crop`` x ``crop`` square.

    Uses Python's ``round`` (half to even), as torchvision's ``CenterCrop`` does.
    """
    top = round((height - crop) / 2.0)
    left = round((width - crop) / 2.0)
    return left, top, left + crop, top + crop


@dataclass(frozen=True)
class ImagePreprocess:
    """Resize the short side to ``resize_short`` px, centre-crop ``crop`` px, normalise.

    ``mean`` and ``std`` are per RGB channel on the ``[0, 1]`` scale: the output is
    ``(pixel / 255 - mean) / std``. Stored in the artifact manifest via
    :meth:`to_dict` / :meth:`from_dict`.
    """

    resize_short: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: Interpolation = "bicubic"

    def __post_init__(self) -> None:
        # Normalise lists (e.g. from JSON) to tuples so instances compare and hash.
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.resize_short < 1 or self.crop < 1:
            raise ValueError(f"resize_short and crop must be positive, got {self}")
        if self.crop > self.resize_short:
            raise ValueError(f"crop {self.crop} is larger than resize_short {self.resize_short}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {self.mean}, {self.std}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}, got {self.interpolation!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImagePreprocess:
        """Inverse of :meth:`to_dict`; ``ValueError`` on missing, unknown or bad fields."""
        fields = {"resize_short", "crop", "mean", "std", "interpolation"}
        missing = fields - {"interpolation"} - data.keys()
        unknown = data.keys() - fields
        if missing or unknown:
            raise ValueError(f"image preprocess: missing {sorted(missing)}, unknown {sorted(unknown)}")
        return cls(
            resize_short=int(data["resize_short"]),
            crop=int(data["crop"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            interpolation=data.get("interpolation", "bicubic"),
        )

    def crop_image(self, image: Image.Image) -> Image.Image:
        """One image -> the resized, centre-cropped ``crop`` x ``crop`` RGB PIL image."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        size = resized_size(image.width, image.height, self.resize_short)
        if size != image.size:
            image = image.resize(size, _RESAMPLE[self.interpolation])
        return image.crop(center_crop_box(size[0], size[1], self.crop))

    def pixels(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images -> ``(N, crop, crop, 3)`` uint8, resized and centre-cropped."""
        if not images:
            raise ValueError("no images to preprocess")
        return np.stack([to_numpy_rgb(self.crop_image(image)) for image in images])

    def array(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images -> ``(N, 3, crop, crop)`` float32 NCHW numpy (ONNX Runtime; no torch): the same
        numbers as :meth:`__call__`."""
        return normalise_nchw(self.pixels(images), self.mean, self.std)

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> ``(N, 3, crop, crop)`` float32, ``torch.channels_last`` layout."""
        import torch

        pixels = self.pixels(images)
        # (N, H, W, 3) viewed as (N, 3, H, W): already channels_last strides, no copy.
        batch = torch.from_numpy(pixels).permute(0, 3, 1, 2).to(torch.float32)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        # Same operations, in the same order, as ToTensor (div 255) then Normalize.
        batch = batch.div(255).sub(mean).div(std)
        return batch.contiguous(memory_format=torch.channels_last)


EFFICIENTNET_LITE0_PREPROCESS = ImagePreprocess(
    resize_short=256,
    crop=224,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    interpolation="bicubic",
)


Preprocess = Callable[[Sequence[Image.Image]], "torch.Tensor"]


def normalise_nchw(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, H, W)`` float32 ``(pixel / 255 - mean) / std``, C-contiguous.

    float32 throughout, in the torch path's order (div 255, sub mean, div std): the same numbers.
    """
    m = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    batch = pixels.transpose(0, 3, 1, 2).astype(np.float32)
    batch /= np.float32(255)
    batch -= m
    batch /= s
    return np.ascontiguousarray(batch)


@dataclass(frozen=True)
class SquashPreprocess:
    """Resize to ``height`` x ``width`` (aspect not kept), scale, normalise."""

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    def pixels(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images -> ``(N, height, width, 3)`` uint8."""
        if not images:
            raise ValueError("no images to preprocess")
        size = (self.width, self.height)
        arrays = [
            to_numpy_rgb(im if im.size == size else im.convert("RGB").resize(size, _RESAMPLE[self.interpolation]))
            for im in images
        ]
        return np.stack(arrays)

    def array(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images -> ``(N, 3, height, width)`` float32 NCHW numpy (ONNX Runtime; no torch)."""
        return normalise_nchw(self.pixels(images), self.mean, self.std)

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        import torch

        batch = torch.from_numpy(self.pixels(images)).permute(0, 3, 1, 2).to(torch.float32)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        return batch.div(255).sub(mean).div(std).contiguous(memory_format=torch.channels_last)


def preprocess_to_dict(pre: ImagePreprocess | SquashPreprocess) -> dict[str, Any]:
    mode = "squash" if isinstance(pre, SquashPreprocess) else "crop"
    return {"mode": mode, **pre.to_dict()}


_CROP_KEYS = ("resize_short", "crop", "mean", "std", "interpolation")


def preprocess_from_dict(data: Mapping[str, Any]) -> ImagePreprocess | SquashPreprocess:
    """Inverse of :func:`preprocess_to_dict`; ``ValueError`` on bad fields. Other keys (a manifest's
    ``preprocessing`` also holds e.g. ``max_length``) are ignored."""
    fields = dict(data)
    mode = fields.pop("mode", "crop")
    if mode == "squash":
        return SquashPreprocess(
            height=int(fields["height"]),
            width=int(fields["width"]),
            mean=tuple(fields["mean"]),
            std=tuple(fields["std"]),
            interpolation=str(fields.get("interpolation", "bilinear")),
        )
    if mode != "crop":
        raise ValueError(f"unknown preprocessing mode {mode!r}")
    return ImagePreprocess.from_dict({k: v for k, v in fields.items() if k in _CROP_KEYS})


def input_size(pre: ImagePreprocess | SquashPreprocess) -> tuple[int, int]:
    """(height, width) of the tensors ``pre`` makes."""
    if isinstance(pre, SquashPreprocess):
        return pre.height, pre.width
    return pre.crop, pre.crop
