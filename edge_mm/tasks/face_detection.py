"""Face detection: images -> boxes, five landmarks and confidence per face (MTCNN)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from edge_mm.errors import Unprocessable
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.face_detector import FaceDetector
from edge_mm.runtime.models import Models
from edge_mm.runtime.mtcnn import Face
from edge_mm.tasks.fields import float_field, int_field, with_defaults
from edge_mm.tasks.payload import Images, Limits, Payload, images_from
from edge_mm.tasks.task import ModelRequest, Task

ROUTE = "/v1/face-detection"
KINDS = ("face-detection",)
MAX_SIDE = 4096  # px; larger images are searched scaled down to at most this
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class FaceOptions:
    min_face_size: float
    thresholds: tuple[float, float, float]
    max_side: int
    min_confidence: float
    max_faces: int


def parse_options(fields: Mapping[str, Any], defaults: Mapping[str, Any]) -> FaceOptions:
    """Options: ``min_face_size`` (px), ``threshold`` (the final O-Net cut-off) or ``thresholds``
    (three), ``max_side`` (px, up to 4096; larger images are searched scaled down), ``min_confidence``,
    ``max_faces``. The smallest ``min_face_size`` allowed grows with the searched image size.
    ``defaults`` are the model's options from settings."""
    merged = with_defaults(fields, defaults)
    if fields.get("thresholds") is not None:
        thresholds = fields["thresholds"]
    elif fields.get("threshold") is not None:
        thresholds = [0.6, 0.7, fields["threshold"]]
    else:
        thresholds = defaults.get("thresholds", [0.6, 0.7, defaults.get("threshold", 0.7)])
    if (
        not isinstance(thresholds, list | tuple)
        or len(thresholds) != 3
        or not all(isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t <= 1 for t in thresholds)
    ):
        raise Unprocessable("'thresholds' must be three numbers in [0, 1] ('threshold': one, the final stage)")
    return FaceOptions(
        min_face_size=float_field(merged, "min_face_size", 20, 4, 10000),
        thresholds=(float(thresholds[0]), float(thresholds[1]), float(thresholds[2])),
        max_side=int_field(merged, "max_side", 1280, 64, MAX_SIDE) or 1280,
        min_confidence=float_field(merged, "min_confidence", 0.0, 0.0, 1.0),
        max_faces=int_field(merged, "max_faces", 100, 1, 1000) or 100,
    )


Request = ModelRequest[Images, FaceOptions]


def parse(payload: Payload, limits: Limits, models: Models) -> Request:
    served = models.get(KINDS, ROUTE, payload.model_name())
    options = parse_options(payload.fields, served.options)
    return Request(served, images_from(payload, limits), options)


def face_json(face: Face) -> dict[str, Any]:
    x1, y1, x2, y2 = (round(v, 1) for v in face.box)
    return {
        "box": {"x_min": x1, "y_min": y1, "x_max": x2, "y_max": y2},
        "confidence": round(face.confidence, 6),
        "landmarks": {name: [round(x, 1), round(y, 1)] for name, (x, y) in zip(LANDMARKS, face.landmarks, strict=True)},
    }


def detect(
    model: FaceDetector, image: Image.Image, options: FaceOptions, deadline: Deadline | None = None
) -> list[Face]:
    """Faces at or above ``min_confidence``, most confident first, at most ``max_faces``."""
    faces = model.detect(
        image,
        min_face_size=options.min_face_size,
        thresholds=options.thresholds,
        max_side=options.max_side,
        deadline=deadline,
    )
    return [f for f in faces if f.confidence >= options.min_confidence][: options.max_faces]


def find_faces(
    model: FaceDetector, images: list[Image.Image], options: FaceOptions, deadline: Deadline | None = None
) -> dict[str, Any]:
    results = []
    for image in images:
        faces = detect(model, image, options, deadline)
        results.append({"width": image.width, "height": image.height, "faces": [face_json(f) for f in faces]})
    return {"model": model.name, "results": results}


def run(models: Models, request: Request, deadline: Deadline) -> dict[str, Any]:
    return models.call(
        request.model, deadline, lambda m: find_faces(m, request.inputs.decode(), request.options, deadline)
    )


TASK = Task("face-detection", (ROUTE,), KINDS, parse, run, "Face boxes and five landmarks (MTCNN).", media=("image",))
