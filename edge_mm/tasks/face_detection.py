"""Face detection: images -> boxes, five landmarks and confidence per face (MTCNN)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from edge_mm.errors import Unprocessable
from edge_mm.runtime.pipeline_models import FaceDetector
from edge_mm.tasks.face_pipeline import Face
from edge_mm.tasks.fields import float_field, int_field

LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class FaceRequest:
    min_face_size: float
    thresholds: tuple[float, float, float]
    max_side: int
    min_confidence: float
    max_faces: int


def parse(payload: Mapping[str, Any], defaults: Mapping[str, Any]) -> FaceRequest:
    """Options: ``min_face_size`` (px), ``threshold`` (the final O-Net cut-off) or ``thresholds``
    (three), ``max_side`` (px; larger images are searched scaled down), ``min_confidence``, ``max_faces``."""
    merged = {**defaults, **payload}
    if "thresholds" in payload:
        thresholds = payload["thresholds"]
    elif "threshold" in payload:
        thresholds = [0.6, 0.7, payload["threshold"]]
    else:
        thresholds = defaults.get("thresholds", [0.6, 0.7, defaults.get("threshold", 0.7)])
    if (
        not isinstance(thresholds, list | tuple)
        or len(thresholds) != 3
        or not all(isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t <= 1 for t in thresholds)
    ):
        raise Unprocessable("'thresholds' must be three numbers in [0, 1] ('threshold': one, the final stage)")
    return FaceRequest(
        min_face_size=float_field(merged, "min_face_size", 20, 4, 10000),
        thresholds=(float(thresholds[0]), float(thresholds[1]), float(thresholds[2])),
        max_side=int_field(merged, "max_side", 1280, 64, 8192) or 1280,
        min_confidence=float_field(merged, "min_confidence", 0.0, 0.0, 1.0),
        max_faces=int_field(merged, "max_faces", 100, 1, 1000) or 100,
    )


def face_json(face: Face) -> dict[str, Any]:
    x1, y1, x2, y2 = (round(v, 1) for v in face.box)
    return {
        "box": {"x_min": x1, "y_min": y1, "x_max": x2, "y_max": y2},
        "confidence": round(face.confidence, 6),
        "landmarks": {name: [round(x, 1), round(y, 1)] for name, (x, y) in zip(LANDMARKS, face.landmarks, strict=True)},
    }


def detect(model: FaceDetector, image: Image.Image, req: FaceRequest) -> list[Face]:
    faces = model.detect(image, min_face_size=req.min_face_size, thresholds=req.thresholds, max_side=req.max_side)
    return [f for f in faces if f.confidence >= req.min_confidence][: req.max_faces]


def run(model: FaceDetector, images: list[Image.Image], req: FaceRequest) -> dict[str, Any]:
    results = []
    for image in images:
        faces = detect(model, image, req)
        results.append({"width": image.width, "height": image.height, "faces": [face_json(f) for f in faces]})
    return {"model": model.name, "results": results}
