"""Object detection (DETR/YOLOS-style): per-query class logits + normalised boxes -> labelled pixel boxes;
a ``yolo-detection`` model (runtime/yolo_detector.py) answers the same shape with its own decoding and NMS,
an ``ssd-detection`` model (runtime/ssd_detector.py) with the NMS and COCO ids of its TF graph.

Served through the DeepStack route ``/v1/vision/detection`` (tasks/deepstack.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image
from pydantic import Field, field_validator

from edge_mm.runtime.deadline import Deadline
from edge_mm.tasks.schemas import ModelOptions

if TYPE_CHECKING:  # the runner needs torch: imported when such a model loads, not with the task table
    import torch

    from edge_mm.runtime.object_detector import ObjectDetector
    from edge_mm.runtime.ssd_detector import SsdDetector
    from edge_mm.runtime.yolo_detector import YoloDetector

# yolo-detection: runtime/yolo_detector.py, ssd-detection: runtime/ssd_detector.py; same answer
KINDS = ("object-detection", "yolo-detection", "ssd-detection")


class ServeOptions(ModelOptions):
    """None yet: DeepStack's confidence cut comes with each request."""


class SsdServeOptions(ModelOptions):
    """An ``ssd-detection`` model's serve-time options (settings)."""

    min_confidence: float = Field(
        0.3, ge=0, le=1, description="boxes scored lower are never answered, whatever a request's min_confidence"
    )
    labels: list[str] | None = Field(None, description='answer only these COCO names (e.g. ["person", "car"])')

    @field_validator("labels")
    @classmethod
    def _coco_names(cls, value: list[str] | None) -> list[str] | None:
        from edge_mm.runtime.ssd_detector import COCO_NAMES  # numpy only

        unknown = sorted(set(value or ()) - set(COCO_NAMES.values()))
        if unknown:
            raise ValueError(f"not COCO names: {unknown}")
        return value


def postprocess(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    width: int,
    height: int,
    labels: Sequence[str],
    min_confidence: float,
    limit: int,
) -> list[dict[str, Any]]:
    """(Q, C+1) logits (last class = no object), (Q, 4) cx, cy, w, h in [0, 1] ->
    ``{label, confidence, x_min, y_min, x_max, y_max}`` in pixels, best first, at most ``limit``."""
    import torch

    probs = logits.float().softmax(-1)[:, :-1]
    scores, classes = probs.max(-1)
    cx, cy, w, h = boxes.float().unbind(-1)
    xyxy = torch.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], -1)
    xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, width)
    xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, height)
    keep = [i for i in scores.argsort(descending=True).tolist() if scores[i] >= min_confidence][:limit]
    return [
        {
            "label": labels[int(classes[i])] if int(classes[i]) < len(labels) else f"class_{int(classes[i])}",
            "confidence": round(float(scores[i]), 6),
            "x_min": int(round(float(xyxy[i, 0]))),
            "y_min": int(round(float(xyxy[i, 1]))),
            "x_max": int(round(float(xyxy[i, 2]))),
            "y_max": int(round(float(xyxy[i, 3]))),
        }
        for i in keep
    ]


def detect(
    model: ObjectDetector | YoloDetector | SsdDetector,
    images: list[Image.Image],
    min_confidence: float,
    limit: int,
    deadline: Deadline | None = None,
    options: Mapping[str, Any] | None = None,
) -> list[list[dict[str, Any]]]:
    """``options``: the model's (settings); a yolo-detection model takes its ``iou_threshold`` and
    ``max_detections`` (under ``limit``) from them, an ssd-detection model its ``min_confidence`` floor and ``labels``."""
    from edge_mm.runtime.ssd_detector import SsdDetector  # numpy only: no torch on these paths
    from edge_mm.runtime.yolo_detector import YoloDetector

    if isinstance(model, YoloDetector):
        opts = options or {}
        iou, most = float(opts.get("iou_threshold", 0.45)), min(limit, int(opts.get("max_detections", limit)))
        return [
            model.predictions(im, min_confidence=min_confidence, iou_threshold=iou, limit=most, deadline=deadline)
            for im in images
        ]
    if isinstance(model, SsdDetector):
        opts = options or {}
        floor, only = max(min_confidence, float(opts.get("min_confidence", 0.3))), opts.get("labels")
        return [model.predictions(im, min_confidence=floor, limit=limit, only=only, deadline=deadline) for im in images]
    return [
        postprocess(lg, bx, im.width, im.height, model.labels, min_confidence, limit)
        for (lg, bx), im in zip(model.detect(images, deadline), images, strict=True)
    ]
