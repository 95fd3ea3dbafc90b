"""Deterministic sample inputs shared by the build (reference outputs) and `edge-mm check`.

They come from formulas, not random generators, so every machine makes the same
bytes; images travel inside reference.json as base64 PNG.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch


def probe_pixels(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: smooth colour waves plus a bright disc, different per ``seed``."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    chans = []
    for c in range(3):
        f = 0.03 + 0.01 * ((seed + c) % 5)
        chans.append(127.5 + 100 * np.sin(f * x + 0.7 * c + seed) * np.cos(f * 1.3 * y - seed))
    img = np.stack(chans, axis=-1)
    cy, cx, r = height * (0.3 + 0.1 * (seed % 4)), width * (0.6 - 0.1 * (seed % 3)), min(height, width) / 5
    img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = (240, 220 - 30 * (seed % 3), 90)
    return np.clip(img, 0, 255).astype(np.uint8)


def probe_array(*shape: int) -> np.ndarray:
    """float32 array of ``shape`` in about [-1, 1] from a fixed formula (the ONNX Runtime path's probe)."""
    n = int(np.prod(shape))
    return np.sin(np.arange(n, dtype=np.float64) * 0.37).reshape(shape).astype(np.float32)


def probe_tensor(*shape: int) -> torch.Tensor:
    """:func:`probe_array` as a torch tensor (same values)."""
    import torch  # here: the ONNX Runtime path (lite bundle) never needs it

    return torch.from_numpy(probe_array(*shape))


def probe_audio(seconds: float = 1.0, rate: int = 16_000) -> np.ndarray:
    """(n,) float32: a gliding, amplitude-modulated tone; not speech, but exercises the model."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * (180 + 120 * t) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def png_base64(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def image_from_base64(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB")
