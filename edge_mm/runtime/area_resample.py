"""Area resampling of a uint8 image in numpy, equal to torch's ``F.interpolate(mode="area")``.

MTCNN (facenet-pytorch) resizes its image pyramid and its R/O-Net crops with area
interpolation, which torch computes as ``adaptive_avg_pool2d``: output cell ``j`` of
``n_out`` averages input rows ``floor(j * n_in / n_out)`` to ``ceil((j + 1) * n_in / n_out)``
(exclusive), likewise columns, as ``sum / rows / cols`` in float32. Here the window sums come
from cumulative sums of the image's integer pixels (exact), converted to float32 (exact while a
window sums to under 2**24, i.e. up to about 65 000 pixels of 255) and divided the same way, so the net inputs equal the torch path's bit for bit (``tests/runtime/test_mtcnn.py``).
That lets the ONNX Runtime path keep facenet-pytorch's boxes without importing torch.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AreaResampler", "area_windows"]


def area_windows(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) input indices, end exclusive, of each of ``n_out`` output cells (torch's integer formula)."""
    j = np.arange(n_out, dtype=np.int64)
    return (j * n_in) // n_out, ((j + 1) * n_in + n_out - 1) // n_out


class AreaResampler:
    """One (H, W, C) uint8 image, ready to be area-resized whole or cropped-and-resized many times.

    Holds the image's summed-area table, channel-planar so the outputs come out channels-first
    without a transpose; integers (int32 while the whole image sums to under 2**31, else int64).
    Outputs are float32 pixel means in 0..255, (C, height, width) or (K, C, size, size).
    Gathers go through ``np.take`` on flat indices: 2-3x faster than 2-D fancy indexing here.
    """

    def __init__(self, image: np.ndarray) -> None:
        if image.dtype != np.uint8 or image.ndim != 3:
            raise ValueError(f"image must be (H, W, C) uint8, not {image.dtype} {image.shape}")
        self.height, self.width, channels = image.shape
        dtype = np.int32 if self.height * self.width * 255 < 2**31 else np.int64
        planar = np.ascontiguousarray(image.transpose(2, 0, 1))
        table = np.zeros((channels, self.height + 1, self.width + 1), dtype)
        np.cumsum(planar, axis=1, dtype=dtype, out=table[:, 1:, 1:])
        np.cumsum(table[:, 1:, 1:], axis=2, out=table[:, 1:, 1:])
        self._table = table

    def resize(self, height: int, width: int) -> np.ndarray:
        """The whole image at ``height`` x ``width`` -> (C, height, width) float32."""
        r0, r1 = area_windows(self.height, height)
        c0, c1 = area_windows(self.width, width)
        band = self._table[:, r1] - self._table[:, r0]  # (C, height, W + 1): row-window sums, cumulated along x
        sums = (np.take(band, c1, axis=2) - np.take(band, c0, axis=2)).astype(np.float32)
        return sums / (r1 - r0).astype(np.float32)[:, None] / (c1 - c0).astype(np.float32)

    def crops(self, y0: np.ndarray, y1: np.ndarray, x0: np.ndarray, x1: np.ndarray, size: int) -> np.ndarray:
        """Regions ``[y0, y1) x [x0, x1)`` (each non-empty, inside the image) -> (K, C, size, size) float32."""
        channels = self._table.shape[0]
        if not len(y0):
            return np.zeros((0, channels, size, size), np.float32)
        rs, re = _crop_windows(np.asarray(y0), np.asarray(y1), size)  # (K, size) each
        cs, ce = _crop_windows(np.asarray(x0), np.asarray(x1), size)
        flat = self._table.reshape(channels, -1)
        stride = self.width + 1
        a, b = rs[:, :, None] * stride, re[:, :, None] * stride
        c, d = cs[:, None, :], ce[:, None, :]
        sums = np.take(flat, b + d, axis=1) - np.take(flat, a + d, axis=1)
        sums -= np.take(flat, b + c, axis=1)
        sums += np.take(flat, a + c, axis=1)  # (C, K, size, size)
        rows = (re - rs).astype(np.float32)[:, :, None]
        cols = (ce - cs).astype(np.float32)[:, None, :]
        return (sums.astype(np.float32) / rows / cols).transpose(1, 0, 2, 3)


def _crop_windows(start: np.ndarray, end: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    length = (end - start).astype(np.int64)[:, None]
    j = np.arange(size, dtype=np.int64)[None, :]
    return start[:, None] + (j * length) // size, start[:, None] + ((j + 1) * length + size - 1) // size
