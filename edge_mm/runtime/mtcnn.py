"""MTCNN face detection: image pyramid -> P-Net -> R-Net -> O-Net.

One pipeline, two engines for the pixels and the nets (no torchvision either way):

- ``engine="torch"``: the nets are torch callables (eager modules or TorchScript artifacts),
  resizing is ``F.interpolate(mode="area")`` on ``device`` (CPU or CUDA);
- ``engine="numpy"``: the nets take and return numpy arrays (ONNX Runtime sessions,
  ``runtime/onnx_session.py``), resizing is ``runtime/area_resample.py``, whose output equals
  torch's bit for bit. This path never imports torch (the lite bundle has none).

Either way the nets have the outputs of ``edge_mm.build.mtcnn_nets``:

- ``pnet(x: (1, 3, H, W)) -> (reg: (1, 4, h, w), prob: (1, 2, h, w))``
- ``rnet(x: (N, 3, 24, 24)) -> (reg: (N, 4), prob: (N, 2))``
- ``onet(x: (N, 3, 48, 48)) -> (reg: (N, 4), landmarks: (N, 10), prob: (N, 2))``

The box arithmetic (1-based crop offsets, ``+1`` widths in regression, area
resampling, crops clipped to the image rather than zero-padded) follows
facenet-pytorch's ``detect_face`` so that results agree with it; see
``tests/runtime/test_mtcnn.py`` for the measured agreement.
Cost grows with pixel count / ``min_face_size**2``: callers bound the image size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from edge_mm.errors import Unprocessable
from edge_mm.runtime.area_resample import AreaResampler
from edge_mm.runtime.deadline import Deadline

if TYPE_CHECKING:
    import torch

__all__ = ["Engine", "Face", "detect_faces", "nms", "pyramid_scales"]

Net = Callable[[Any], Any]
Engine = Literal["torch", "numpy"]

_PNET_STRIDE = 2
_PNET_CELL = 12
_BATCH = 512  # R/O-Net crops per forward call: bounds peak memory on crowded images
# P-Net's first (largest) pyramid level, in pixels: bounds the work and memory of one image
# (the whole pyramid is about twice this). A 1280 px square at min_face_size 8 px fits.
PNET_MAX_PIXELS = 4_000_000
MAX_CANDIDATES = 4_096  # stage-1 boxes passed on to R-Net, the most confident first
_NMS_BLOCK = 256  # boxes per overlap matrix in nms: (256, N) float64 stays small


@dataclass(frozen=True)
class Face:
    """One detected face, in pixels of the input image (floats, origin top-left).

    ``box`` is ``(x_min, y_min, x_max, y_max)`` clipped to ``[0, W] x [0, H]``;
    ``confidence`` is the O-Net face probability in [0, 1]; ``landmarks`` are five
    ``(x, y)`` points: left eye, right eye, nose, mouth left, mouth right (from the
    viewer's side: "left eye" has the smaller x in a frontal face). Landmarks are
    not clipped.
    """

    box: tuple[float, float, float, float]
    confidence: float
    landmarks: tuple[tuple[float, float], ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"box": [4], "confidence": p, "landmarks": [[x, y] x 5]}``."""
        return {
            "box": list(self.box),
            "confidence": self.confidence,
            "landmarks": [list(p) for p in self.landmarks],
        }


def min_face_floor(height: int, width: int) -> float:
    """The smallest ``min_face_size`` (px) whose first pyramid level stays within :data:`PNET_MAX_PIXELS`."""
    return max(1.0, 12.0 * (height * width / PNET_MAX_PIXELS) ** 0.5)


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """Scales at which P-Net's 12 px window sees faces from ``min_face_size`` px up.

    The first scale maps ``min_face_size`` to 12 px; each next one is ``factor``
    times smaller, while the scaled short side stays >= 12 px.
    """
    scale = 12.0 / min_face_size
    short_side = min(height, width) * scale
    scales = []
    while short_side >= 12:
        scales.append(scale)
        scale *= factor
        short_side *= factor
    return scales


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    mode: Literal["union", "min"] = "union",
    *,
    inclusive: bool = False,
) -> np.ndarray:
    """Greedy non-maximum suppression.

    ``boxes``: (N, 4) ``x1, y1, x2, y2``; ``scores``: (N,). Returns the kept indices,
    (K,) int64, highest score first (ties: lower index first). A box is dropped when
    its overlap with an already kept box is ``> threshold``; overlap is
    intersection / union (``"union"``) or intersection / smaller area (``"min"``).
    ``inclusive=True`` counts integer pixels (width ``x2 - x1 + 1``), as the original
    MTCNN does; ``False`` uses width ``x2 - x1``, as torchvision's ``nms`` does.
    """
    if mode not in ("union", "min"):
        raise ValueError(f"mode must be 'union' or 'min', not {mode!r}")
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(b) != len(s):
        raise ValueError(f"{len(b)} boxes but {len(s)} scores")
    one = 1.0 if inclusive else 0.0
    order = np.argsort(-s, kind="stable")
    x1, y1, x2, y2 = b[order].T
    area = np.maximum(x2 - x1 + one, 0.0) * np.maximum(y2 - y1 + one, 0.0)
    n = len(order)
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    # Overlaps of a block of the highest-scoring boxes with every lower one, one matrix op per
    # block instead of a vector op per kept box; the same float64 formula, so the same answer.
    for start in range(0, n, _NMS_BLOCK):
        stop = min(start + _NMS_BLOCK, n)
        rows = slice(start, stop)
        iw = np.minimum(x2[rows, None], x2[None, start:]) - np.maximum(x1[rows, None], x1[None, start:]) + one
        ih = np.minimum(y2[rows, None], y2[None, start:]) - np.maximum(y1[rows, None], y1[None, start:]) + one
        inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
        if mode == "min":
            denom = np.minimum(area[rows, None], area[None, start:])
        else:
            denom = area[rows, None] + area[None, start:] - inter
        over = np.divide(inter, denom, out=np.zeros_like(inter), where=denom > 0) > threshold
        for i in range(start, stop):
            if suppressed[i]:
                continue
            keep.append(int(order[i]))
            suppressed[i + 1 :] |= over[i - start, i + 1 - start :]
    return np.asarray(keep, dtype=np.int64)


def detect_faces(
    image: np.ndarray,
    pnet: Net,
    rnet: Net,
    onet: Net,
    *,
    min_face_size: float = 20,
    thresholds: Sequence[float] = (0.6, 0.7, 0.7),
    factor: float = 0.709,
    device: torch.device | str = "cpu",
    deadline: Deadline | None = None,
    engine: Engine = "torch",
) -> list[Face]:
    """Faces in ``image``: (H, W, 3) uint8 RGB, most confident first.

    ``min_face_size`` (px) is the smallest face searched for; ``thresholds`` are the
    P/R/O-Net probability cut-offs; ``factor`` in [0.1, 1) is the pyramid step.
    ``engine`` says what the nets take (see the module docstring); ``device`` is where
    torch nets live (the numpy engine runs on the CPU); ``deadline`` is checked between
    pyramid levels and stages. Raises ``Unprocessable`` for bad option values
    and ``ValueError`` when ``image`` is not (H, W, 3) uint8.
    """
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f"image must be (H, W, 3) uint8, not {getattr(image, 'shape', None)}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, not {image.dtype}")
    _check_options(min_face_size, thresholds, factor)
    t1, t2, t3 = (float(t) for t in thresholds)
    height, width = float(image.shape[0]), float(image.shape[1])

    pixels: _Pixels
    if engine == "numpy":
        pixels = _NumpyPixels(image)
    elif engine == "torch":
        pixels = _TorchPixels(image, device)
    else:
        raise ValueError(f"engine must be 'torch' or 'numpy', not {engine!r}")
    with pixels.context():
        # boxes: (K, 5) x1, y1, x2, y2, score
        boxes = _propose(pixels, pnet, min_face_size, t1, factor, deadline)
        if deadline is not None:
            deadline.check("face detection")
        if len(boxes) > MAX_CANDIDATES:
            boxes = boxes[np.argsort(-boxes[:, 4], kind="stable")[:MAX_CANDIDATES]]
        if len(boxes):
            boxes = _refine(pixels, rnet, boxes, t2)
        if not len(boxes):
            return []
        if deadline is not None:
            deadline.check("face detection")
        boxes, points = _output(pixels, onet, boxes, t3)

    order = np.argsort(-boxes[:, 4], kind="stable")
    faces = []
    for i in order:
        x1, y1, x2, y2, score = (float(v) for v in boxes[i])
        box = (
            min(max(x1, 0.0), width),
            min(max(y1, 0.0), height),
            min(max(x2, 0.0), width),
            min(max(y2, 0.0), height),
        )
        landmarks = tuple((float(x), float(y)) for x, y in points[i])
        faces.append(Face(box=box, confidence=score, landmarks=landmarks))
    return faces


class _Pixels:
    """The image and the nets' calling convention of one engine: pyramid levels, crops, forward."""

    height: int
    width: int

    def context(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def level(self, height: int, width: int) -> Any:
        """The whole image area-resized to ``height`` x ``width``, normalized: (1, 3, height, width)."""
        raise NotImplementedError

    def crops(self, y0: np.ndarray, y1: np.ndarray, x0: np.ndarray, x1: np.ndarray, size: int) -> Any:
        """Regions ``[y0, y1) x [x0, x1)`` area-resized to ``size`` x ``size``, normalized: (K, 3, size, size)."""
        raise NotImplementedError

    def run(self, net: Net, x: Any) -> list[np.ndarray]:
        """``net(x)``'s outputs as float32 numpy arrays."""
        raise NotImplementedError


class _NumpyPixels(_Pixels):
    """numpy in and out (ONNX Runtime sessions): NCHW float32 inputs, never imports torch."""

    def __init__(self, image: np.ndarray) -> None:
        self._resampler = AreaResampler(image)
        self.height, self.width = image.shape[:2]

    def level(self, height: int, width: int) -> np.ndarray:
        return _normalize(self._resampler.resize(height, width)[None])

    def crops(self, y0: np.ndarray, y1: np.ndarray, x0: np.ndarray, x1: np.ndarray, size: int) -> np.ndarray:
        return np.ascontiguousarray(_normalize(self._resampler.crops(y0, y1, x0, x1, size)))

    def run(self, net: Net, x: Any) -> list[np.ndarray]:
        outs = net(x)
        return [np.asarray(o, dtype=np.float32) for o in (outs if isinstance(outs, tuple | list) else (outs,))]


class _TorchPixels(_Pixels):
    """torch tensors in and out on ``device``; net inputs go channels-last: CPU max-pooling is
    2-8x faster than in NCHW (measured, torch 2.14); resizing stays NCHW, where area pooling
    of 3 channels is fast."""

    def __init__(self, image: np.ndarray, device: Any) -> None:
        import torch

        self._torch = torch
        # (1, 3, H, W) float32 in 0..255; astype makes the writable copy torch wants.
        pixels = torch.from_numpy(image.astype(np.float32)).to(device)
        self._img = pixels.permute(2, 0, 1).unsqueeze(0).contiguous()
        self.height, self.width = image.shape[:2]

    def context(self) -> contextlib.AbstractContextManager[Any]:
        return self._torch.inference_mode()

    def level(self, height: int, width: int) -> Any:
        import torch.nn.functional as F

        return _normalize(F.interpolate(self._img, size=(height, width), mode="area"))

    def crops(self, y0: np.ndarray, y1: np.ndarray, x0: np.ndarray, x1: np.ndarray, size: int) -> Any:
        import torch.nn.functional as F

        if not len(y0):
            return self._img.new_zeros((0, 3, size, size))
        parts = [
            F.interpolate(self._img[:, :, a:b, c:d], size=(size, size), mode="area")
            for a, b, c, d in zip(y0.tolist(), y1.tolist(), x0.tolist(), x1.tolist(), strict=True)
        ]
        return _normalize(self._torch.cat(parts))

    def run(self, net: Net, x: Any) -> list[np.ndarray]:
        outs = net(x.contiguous(memory_format=self._torch.channels_last))
        return [o.float().cpu().numpy() for o in outs]


def _check_options(min_face_size: float, thresholds: Sequence[float], factor: float) -> None:
    if not min_face_size >= 1:
        raise Unprocessable(f"min_face_size must be >= 1 px, not {min_face_size}")
    if len(thresholds) != 3 or not all(0.0 <= float(t) <= 1.0 for t in thresholds):
        raise Unprocessable(f"thresholds must be three probabilities in [0, 1], not {thresholds}")
    if not 0.1 <= factor < 1.0:
        raise Unprocessable(f"factor must be in [0.1, 1), not {factor}")


def _normalize(x: Any) -> Any:
    """0..255 pixels -> about [-1, 1], as the nets were trained."""
    return (x - 127.5) * 0.0078125


def _propose(
    pixels: _Pixels, pnet: Net, min_face_size: float, threshold: float, factor: float, deadline: Deadline | None
) -> np.ndarray:
    """Stage 1: P-Net over the pyramid -> (K, 5) squared candidate boxes + scores."""
    height, width = pixels.height, pixels.width
    per_scale = []
    for scale in pyramid_scales(height, width, min_face_size, factor):
        if deadline is not None:
            deadline.check("face detection")
        reg, prob = pixels.run(pnet, pixels.level(int(height * scale + 1), int(width * scale + 1)))[:2]
        cand = _windows_to_boxes(reg[0], prob[0, 1], scale, threshold)
        per_scale.append(cand[nms(cand[:, :4], cand[:, 4], 0.5)])
    cand = np.concatenate(per_scale) if per_scale else np.zeros((0, 9), np.float32)
    cand = cand[nms(cand[:, :4], cand[:, 4], 0.7)]
    # Regress with the window size (x2 - x1, no +1), as facenet-pytorch's stage 1 does.
    w = cand[:, 2] - cand[:, 0]
    h = cand[:, 3] - cand[:, 1]
    boxes = np.stack(
        [
            cand[:, 0] + cand[:, 5] * w,
            cand[:, 1] + cand[:, 6] * h,
            cand[:, 2] + cand[:, 7] * w,
            cand[:, 3] + cand[:, 8] * h,
            cand[:, 4],
        ],
        axis=1,
    )
    return _square(boxes)


def _windows_to_boxes(reg: np.ndarray, prob: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """P-Net maps -> (K, 9) float32: window box (image px), score, 4 box offsets.

    ``reg``: (4, h, w); ``prob``: (h, w) face probability per 12x12 window.
    """
    ys, xs = np.nonzero(prob >= threshold)
    cell = np.stack([xs, ys], axis=1).astype(np.float32)
    q1 = np.floor((_PNET_STRIDE * cell + 1) / np.float32(scale))
    q2 = np.floor((_PNET_STRIDE * cell + _PNET_CELL) / np.float32(scale))
    score = prob[ys, xs][:, None]
    offsets = reg[:, ys, xs].T
    return np.concatenate([q1, q2, score, offsets], axis=1).astype(np.float32)


def _refine(pixels: _Pixels, rnet: Net, boxes: np.ndarray, threshold: float) -> np.ndarray:
    """Stage 2: R-Net on 24x24 crops -> (K, 5) regressed, squared boxes."""
    boxes, crops = _crops(pixels, boxes, 24)
    if not len(boxes):
        return boxes
    reg, prob = _run_batched(pixels, rnet, crops, 2)
    score = prob[:, 1]
    passed = score > threshold
    boxes = np.concatenate([boxes[passed, :4], score[passed, None]], axis=1)
    reg = reg[passed]
    keep = nms(boxes[:, :4], boxes[:, 4], 0.7)
    return _square(_regress(boxes[keep], reg[keep]))


def _output(pixels: _Pixels, onet: Net, boxes: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Stage 3: O-Net on 48x48 crops -> boxes (K, 5) and landmarks (K, 5, 2)."""
    boxes, crops = _crops(pixels, boxes, 48)
    if not len(boxes):
        return boxes, np.zeros((0, 5, 2), np.float32)
    reg, marks, prob = _run_batched(pixels, onet, crops, 3)
    score = prob[:, 1]
    passed = score > threshold
    boxes = np.concatenate([boxes[passed, :4], score[passed, None]], axis=1)
    reg, marks = reg[passed], marks[passed]
    w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    points = np.stack(
        [w * marks[:, :5] + boxes[:, :1] - 1, h * marks[:, 5:] + boxes[:, 1:2] - 1],
        axis=2,
    )
    boxes = _regress(boxes, reg)
    keep = nms(boxes[:, :4], boxes[:, 4], 0.7, "min", inclusive=True)
    return boxes[keep], points[keep]


def _crops(pixels: _Pixels, boxes: np.ndarray, size: int) -> tuple[np.ndarray, Any]:
    """Cut each box (clipped to the image) and resample it to ``size`` x ``size``.

    Returns the boxes whose crop is non-empty and their normalized crops
    (K, 3, size, size).
    Coordinates are 1-based inclusive after truncation, as in the original MTCNN code.
    """
    corners = np.trunc(boxes[:, :4]).astype(np.int64)
    x = np.maximum(corners[:, 0], 1)
    y = np.maximum(corners[:, 1], 1)
    ex = np.minimum(corners[:, 2], pixels.width)
    ey = np.minimum(corners[:, 3], pixels.height)
    ok = (ey > y - 1) & (ex > x - 1)
    return boxes[ok], pixels.crops(y[ok] - 1, ey[ok], x[ok] - 1, ex[ok], size)


def _run_batched(pixels: _Pixels, net: Net, crops: Any, n_outputs: int) -> list[np.ndarray]:
    """Run ``net`` on ``crops`` in chunks of ``_BATCH`` -> each output as numpy."""
    parts: list[list[np.ndarray]] = [[] for _ in range(n_outputs)]
    for start in range(0, len(crops), _BATCH):
        outs = pixels.run(net, crops[start : start + _BATCH])
        for i in range(n_outputs):
            parts[i].append(outs[i])
    return [np.concatenate(p) for p in parts]


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply R/O-Net offsets ``reg`` (K, 4), in units of box width/height (px)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] += reg[:, 0] * w
    out[:, 1] += reg[:, 1] * h
    out[:, 2] += reg[:, 2] * w
    out[:, 3] += reg[:, 3] * h
    return out


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (side = the longer side)."""
    out = boxes.astype(np.float32, copy=True)
    w = out[:, 2] - out[:, 0]
    h = out[:, 3] - out[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = out[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = out[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out
