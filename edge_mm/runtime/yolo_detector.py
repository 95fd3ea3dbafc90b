"""A loaded YOLO detector: an Ultralytics ONNX export on ONNX Runtime, letterboxed input, numpy NMS.

Two heads, as Ultralytics exports them: YOLOv5 ``(1, N, 5 + C)`` rows of cx, cy, w, h, objectness
and class scores; YOLOv8/11 ``(1, 4 + C, N)`` columns of cx, cy, w, h and class scores (no
objectness). Boxes are in the model's input px; they are mapped back through the letterbox (scale,
then padding) to the original image's px. Numpy and Pillow only: no torch, no OpenCV.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_mm.errors import ConfigError
from edge_mm.manifest import ModelEntry
from edge_mm.runtime.artifacts import load_artifact
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.probes import image_from_base64, probe_pixels

PAD_VALUE = 114  # Ultralytics' letterbox grey
HEADS = ("yolov5", "yolov8")
EXPECTED_SHAPES = "[1, N, 5+C] (YOLOv5) or [1, 4+C, N] (YOLOv8/11)"
MAX_CANDIDATES = 30_000  # boxes over the threshold that go into NMS at most (Ultralytics' max_nms)


@dataclass(frozen=True)
class Letterbox:
    """How an image went into the model: ``scale`` (model px per image px) and the left/top padding (model px)."""

    scale: float
    pad_x: int
    pad_y: int


def letterbox(image: Image.Image, height: int, width: int) -> tuple[np.ndarray, Letterbox]:
    """(1, 3, height, width) float32 RGB in [0, 1]: ``image`` resized keeping its aspect, centred, padded grey."""
    rgb = image.convert("RGB")
    scale = min(height / rgb.height, width / rgb.width)
    new_w, new_h = max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))
    pad_x, pad_y = round((width - new_w) / 2 - 0.1), round((height - new_h) / 2 - 0.1)  # as Ultralytics rounds
    canvas = np.full((height, width, 3), PAD_VALUE, np.uint8)
    resized = rgb if (new_w, new_h) == rgb.size else rgb.resize((new_w, new_h), Image.Resampling.BILINEAR)
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = np.asarray(resized)
    x = (canvas.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(x), Letterbox(scale, pad_x, pad_y)


def head_layout(shape: Sequence[Any], classes: int | None) -> str:
    """``"yolov5"`` or ``"yolov8"`` for an output of ``shape`` with ``classes`` classes (None: unknown);
    ConfigError naming the expected shapes otherwise."""
    found = list(shape)
    if len(found) != 3 or found[0] != 1 or not all(isinstance(d, int) and d > 0 for d in found):
        raise ConfigError(f"YOLO output shape {found} is not {EXPECTED_SHAPES}")
    _, a, b = found
    if classes is not None:
        if b == 5 + classes:
            return "yolov5"
        if a == 4 + classes:
            return "yolov8"
        raise ConfigError(f"YOLO output shape {found} is not {EXPECTED_SHAPES} for C = {classes} classes")
    # No class count: the long axis is the anchors' (thousands), the short one the box fields.
    if a < b and a > 4:
        return "yolov8"
    if b < a and b > 5:
        return "yolov5"
    raise ConfigError(f"YOLO output shape {found} is not {EXPECTED_SHAPES}")


def decode(output: np.ndarray, head: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's head output -> (boxes (N, 4) x1, y1, x2, y2 in model px, scores (N,), classes (N,) int)."""
    rows = np.asarray(output, np.float32)
    if head == "yolov8":
        rows = rows.T  # (4 + C, N) -> (N, 4 + C)
        cls = rows[:, 4:]
    else:
        cls = rows[:, 5:] * rows[:, 4:5]  # class probability given an object, times objectness
    classes = cls.argmax(1) if cls.shape[1] else np.zeros(len(rows), np.int64)
    scores = cls[np.arange(len(rows)), classes] if cls.shape[1] else rows[:, 4]
    cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    return boxes, scores, classes


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy NMS: indices kept, best first; a box overlapping a kept one by IoU > ``iou_threshold`` goes."""
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = iw * ih
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return keep


def classwise_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float) -> list[int]:
    """NMS within each class only: boxes are shifted apart by class so different classes never overlap."""
    if not len(boxes):
        return []
    offset = classes[:, None].astype(np.float32) * (float(np.abs(boxes).max()) + 1.0)
    return nms(boxes + offset, scores, iou_threshold)


def parse_names(text: str) -> list[str]:
    """Ultralytics' ``names`` metadata (a Python dict literal, ``"{0: 'person', 1: 'car'}"``) -> names by index.

    Read with ``ast.literal_eval`` (literals only, nothing runs); ConfigError unless it is a dict of
    consecutive int keys from 0 to string names (a list of names is accepted too)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ConfigError(f"the model's 'names' metadata is not a Python dict literal: {exc}") from None
    if isinstance(value, list | tuple):
        value = dict(enumerate(value))
    if not isinstance(value, dict) or sorted(value) != list(range(len(value))):
        raise ConfigError("the model's 'names' metadata must map class indices 0..C-1 to names")
    return [str(value[i]) for i in range(len(value))]


def read_labels(path: Path) -> list[str]:
    """A labels file: one class name a line, in class order (blank lines at the end ignored)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.strip() for line in lines]


@dataclass(frozen=True)
class Detection:
    label: str
    confidence: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the image's px


@dataclass
class YoloDetector:
    """:meth:`detect` is thread-safe (the session keeps no state)."""

    name: str
    entry: ModelEntry
    session: Any  # (1, 3, H, W) float32 -> the head output
    labels: list[str]
    height: int
    width: int
    head: str
    device: str = "cpu"
    input_dtype: str = "float32"  # float16 for a half=True export

    @classmethod
    def load(cls, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int) -> YoloDetector:
        pre = entry.preprocessing
        session = load_artifact(entry.variants[variant], root, device)
        h, w = pre["input_size"]
        labels = list(entry.labels or [])
        dtype = pre.get("input_dtype", "float32")
        return cls(name, entry, session, labels, int(h), int(w), pre["head"], device, dtype)

    def label(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else f"class_{index}"

    def raw(self, image: Image.Image) -> tuple[np.ndarray, Letterbox]:
        """The head's output for one image (batch axis dropped) and how the image was letterboxed."""
        x, box = letterbox(image, self.height, self.width)
        out = self.session(x.astype(self.input_dtype, copy=False))
        return np.asarray(out[0] if isinstance(out, tuple) else out, np.float32)[0], box

    def detect(
        self,
        image: Image.Image,
        *,
        min_confidence: float,
        iou_threshold: float = 0.45,
        limit: int = 100,
        deadline: Deadline | None = None,
    ) -> list[Detection]:
        """Objects in ``image``, best first, at most ``limit``; boxes in ``image`` px, clipped to it."""
        output, lb = self.raw(image)
        if deadline is not None:
            deadline.check("object detection")
        boxes, scores, classes = decode(output, self.head)
        over = np.nonzero(scores >= min_confidence)[0]
        over = over[scores[over].argsort()[::-1][:MAX_CANDIDATES]]
        boxes, scores, classes = boxes[over], scores[over], classes[over]
        keep = classwise_nms(boxes, scores, classes, iou_threshold)[:limit]
        mapped = (boxes[keep] - [lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y]) / lb.scale
        mapped = np.clip(mapped, 0, [image.width, image.height, image.width, image.height])
        return [
            Detection(self.label(int(classes[i])), float(scores[i]), tuple(float(v) for v in row))  # type: ignore[arg-type]
            for i, row in zip(keep, mapped, strict=True)
        ]

    def predictions(
        self,
        image: Image.Image,
        *,
        min_confidence: float,
        iou_threshold: float = 0.45,
        limit: int = 100,
        deadline: Deadline | None = None,
    ) -> list[dict[str, Any]]:
        """:meth:`detect` as DeepStack's ``{label, confidence, x_min, y_min, x_max, y_max}`` (integer px)."""
        found = self.detect(
            image, min_confidence=min_confidence, iou_threshold=iou_threshold, limit=limit, deadline=deadline
        )
        return [
            {
                "label": d.label,
                "confidence": round(d.confidence, 6),
                "x_min": int(round(d.box[0])),
                "y_min": int(round(d.box[1])),
                "x_max": int(round(d.box[2])),
                "y_max": int(round(d.box[3])),
            }
            for d in found
        ]

    def check_outputs(self, inputs: list[str]) -> list[np.ndarray]:
        """The raw head output for each base64 PNG probe (`edge-mm check`)."""
        return [self.raw(image_from_base64(s))[0].astype(np.float32).ravel() for s in inputs]

    def warm(self) -> float:
        t0 = time.perf_counter()
        self.detect(Image.fromarray(probe_pixels(self.height // 2 + 1, self.width)), min_confidence=0.25)
        return (time.perf_counter() - t0) * 1000
