"""Image preprocessing as recorded in the manifest -> a callable ``images -> (N, 3, H, W)``.

Two modes cover the checkpoints we build:

- ``crop``: resize the short side, centre crop (EfficientNet, torchvision, CLIP, ConvNeXt);
  the fields of :class:`ImagePreprocess`.
- ``squash``: resize to exactly ``height`` x ``width`` ignoring aspect (ViT-style HF processors).

Both scale to [0, 1], then ``(x - mean) / std``, and return channels-last float32.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from edge_mm.media.image_preprocess import _RESAMPLE, ImagePreprocess, to_numpy_rgb

Preprocess = Callable[[Sequence[Image.Image]], torch.Tensor]


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

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        if not images:
            raise ValueError("no images to preprocess")
        size = (self.width, self.height)
        arrays = [
            to_numpy_rgb(im if im.size == size else im.convert("RGB").resize(size, _RESAMPLE[self.interpolation]))
            for im in images
        ]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(torch.float32)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        return batch.div(255).sub(mean).div(std).contiguous(memory_format=torch.channels_last)


def preprocess_to_dict(pre: ImagePreprocess | SquashPreprocess) -> dict[str, Any]:
    mode = "squash" if isinstance(pre, SquashPreprocess) else "crop"
    return {"mode": mode, **pre.to_dict()}


def preprocess_from_dict(data: Mapping[str, Any]) -> ImagePreprocess | SquashPreprocess:
    """Inverse of :func:`preprocess_to_dict`; ``ValueError`` on bad fields."""
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
    return ImagePreprocess.from_dict(fields)


def input_size(pre: ImagePreprocess | SquashPreprocess) -> tuple[int, int]:
    """(height, width) of the tensors ``pre`` makes."""
    if isinstance(pre, SquashPreprocess):
        return pre.height, pre.width
    return pre.crop, pre.crop
