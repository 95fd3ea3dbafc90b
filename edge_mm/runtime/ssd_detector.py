"""A loaded SSD detector: a TensorFlow Object Detection API graph converted to ONNX, on ONNX Runtime.

The graph takes ``image_tensor`` uint8 (1, H, W, 3) RGB at any size (it resizes to its own input,
300x300 for SSD MobileNet v2, and runs its own NMS) and answers four outputs, in this order:
``detection_boxes`` (1, N, 4) relative ymin, xmin, ymax, xmax; ``detection_scores`` (1, N);
``detection_classes`` (1, N) COCO ids 1..90 as floats (with gaps); ``num_detections`` (1,).
Numpy and Pillow only: no TensorFlow, no torch.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_mm.manifest import ModelEntry
from edge_mm.runtime.artifacts import load_artifact
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.probes import image_from_base64, probe_pixels

OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")

# The 80 COCO classes at the TF Object Detection API's ids (mscoco_label_map.pbtxt): 1..90, ten ids unused.
COCO_NAMES: dict[int, str] = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 8: "truck",
    9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign", 14: "parking meter", 15: "bench",
    16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear",
    24: "zebra", 25: "giraffe", 27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase",
    34: "frisbee", 35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat",
    40: "baseball glove", 41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle",
    46: "wine glass", 47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut",
    61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed", 67: "dining table", 70: "toilet",
    72: "tv", 73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave",
    79: "oven", 80: "toaster", 81: "sink", 82: "refrigerator", 84: "book", 85: "clock", 86: "vase",
    87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush",
}  # fmt: skip


def labels_by_id(names: dict[int, str]) -> list[str]:
    """``names`` as a list indexed by class id (the manifest's ``labels``); an unused id is ``""``."""
    return [names.get(i, "") for i in range(max(names) + 1)]


def label_for(labels: Sequence[str], class_id: int) -> str:
    """The name of ``class_id``; ``class_<id>`` for an id with no name (a gap, or past the table)."""
    name = labels[class_id] if 0 <= class_id < len(labels) else ""
    return name or f"class_{class_id}"


def to_pixels(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 4) relative ymin, xmin, ymax, xmax -> (N, 4) x1, y1, x2, y2 in px of a ``width`` x ``height`` image,
    clipped to it."""
    rel = np.clip(np.asarray(boxes, np.float32).reshape(-1, 4), 0.0, 1.0)
    return np.stack([rel[:, 1] * width, rel[:, 0] * height, rel[:, 3] * width, rel[:, 2] * height], 1)


def image_tensor(image: Image.Image) -> np.ndarray:
    """(1, H, W, 3) uint8 RGB: what ``image_tensor`` takes."""
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), np.uint8)[None])


@dataclass(frozen=True)
class Detection:
    label: str
    confidence: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the image's px


@dataclass
class SsdDetector:
    """:meth:`detect` is thread-safe (the session keeps no state)."""

    name: str
    entry: ModelEntry | None
    session: Any  # (1, H, W, 3) uint8 -> (boxes, scores, classes, num_detections)
    labels: list[str]  # by COCO id; "" for an unused id
    device: str = "cpu"

    @classmethod
    def load(cls, name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int) -> SsdDetector:
        return cls(name, entry, load_artifact(entry.variants[variant], root, device), list(entry.labels or []), device)

    def raw(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes (n, 4) relative ymin, xmin, ymax, xmax; scores (n,); class ids (n,) int) for one image, the
        graph's ``num_detections`` rows only."""
        boxes, scores, classes, num = self.session(image_tensor(image))
        n = int(np.asarray(num).reshape(-1)[0])
        return (
            np.asarray(boxes, np.float32)[0, :n],
            np.asarray(scores, np.float32)[0, :n],
            np.asarray(classes)[0, :n].round().astype(np.int64),
        )

    def detect(
        self,
        image: Image.Image,
        *,
        min_confidence: float,
        limit: int = 100,
        only: Collection[str] | None = None,
        deadline: Deadline | None = None,
    ) -> list[Detection]:
        """Objects in ``image`` scored ``min_confidence`` or more, best first, at most ``limit``; ``only``: keep
        these labels alone (None: all). Boxes in ``image`` px."""
        boxes, scores, classes = self.raw(image)
        if deadline is not None:
            deadline.check("object detection")
        px = to_pixels(boxes, image.width, image.height)
        found = [
            Detection(label_for(self.labels, int(c)), float(s), (float(b[0]), float(b[1]), float(b[2]), float(b[3])))
            for b, s, c in zip(px, scores, classes, strict=True)
            if s >= min_confidence
        ]
        found = [d for d in found if only is None or d.label in only]
        return sorted(found, key=lambda d: -d.confidence)[:limit]

    def predictions(
        self,
        image: Image.Image,
        *,
        min_confidence: float,
        limit: int = 100,
        only: Collection[str] | None = None,
        deadline: Deadline | None = None,
    ) -> list[dict[str, Any]]:
        """:meth:`detect` as DeepStack's ``{label, confidence, x_min, y_min, x_max, y_max}`` (integer px)."""
        return [
            {
                "label": d.label,
                "confidence": round(d.confidence, 6),
                "x_min": int(round(d.box[0])),
                "y_min": int(round(d.box[1])),
                "x_max": int(round(d.box[2])),
                "y_max": int(round(d.box[3])),
            }
            for d in self.detect(image, min_confidence=min_confidence, limit=limit, only=only, deadline=deadline)
        ]

    def check_outputs(self, inputs: list[str]) -> list[np.ndarray]:
        """Boxes then scores (the graph's ``num_detections`` rows) for each base64 PNG probe (`edge-mm check`)."""
        out = []
        for s in inputs:
            boxes, scores, _ = self.raw(image_from_base64(s))
            out.append(np.concatenate([boxes.ravel(), scores]).astype(np.float32))
        return out

    def warm(self) -> float:
        t0 = time.perf_counter()
        self.detect(Image.fromarray(probe_pixels(240, 320)), min_confidence=0.5)
        return (time.perf_counter() - t0) * 1000
