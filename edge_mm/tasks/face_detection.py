"""Face detection: images -> boxes, five landmarks and confidence per face (MTCNN)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from PIL import Image
from pydantic import BaseModel, Field

from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.model_calls import Models
from edge_mm.tasks.payload import Images, Limits, Payload, images_from
from edge_mm.tasks.schemas import ImageInput, ModelOptions, Options, Strict, validate
from edge_mm.tasks.task import ModelRequest, Task, one_model_run

if TYPE_CHECKING:  # the runner needs torch: imported when such a model loads, not with the task table
    from edge_mm.runtime.face_detector import FaceDetector
    from edge_mm.runtime.mtcnn import Face

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


Probability = Annotated[float, Field(ge=0, le=1)]


class ServeOptions(ModelOptions):
    """A face-detection model's serve-time options (settings); a request may override each."""

    min_face_size: float = Field(20, ge=4, le=10000, description="px; the floor grows with the searched image size")
    threshold: Probability | None = Field(None, description="the final (O-Net) stage's cut-off")
    thresholds: list[Probability] | None = Field(None, min_length=3, max_length=3, description="P-, R- and O-Net")
    max_side: int = Field(1280, ge=64, le=MAX_SIDE, description="px; larger images are searched scaled down")
    min_confidence: Probability = Field(0.0, description="faces below this confidence are left out")
    max_faces: int = Field(100, ge=1, le=1000, description="most faces per image")


class Body(ServeOptions, Options, ImageInput):
    model_config = Strict.model_config  # a request: unknown fields ignored, unlike settings


class Box(BaseModel):
    x_min: float
    y_min: float
    x_max: float
    y_max: float


class FaceJson(BaseModel):
    box: Box
    confidence: float
    landmarks: dict[str, list[float]] = Field(description=f"{', '.join(LANDMARKS)}: [x, y] px")


class ImageFaces(BaseModel):
    width: int
    height: int
    faces: list[FaceJson]


class Answer(BaseModel):
    model: str
    results: list[ImageFaces]


def _thresholds(body: Body, fields: Mapping[str, Any]) -> list[float]:
    """The request's ``thresholds``, else its ``threshold`` for the last stage, else the model's."""
    if fields.get("thresholds") is None and fields.get("threshold") is not None:
        return [0.6, 0.7, body.threshold or 0.0]
    if body.thresholds is not None:
        return body.thresholds
    return [0.6, 0.7, 0.7 if body.threshold is None else body.threshold]


def parse_options(fields: Mapping[str, Any], defaults: Mapping[str, Any]) -> FaceOptions:
    """Options: ``min_face_size`` (px), ``threshold`` (the final O-Net cut-off) or ``thresholds``
    (three), ``max_side`` (px, up to 4096; larger images are searched scaled down), ``min_confidence``,
    ``max_faces``. The smallest ``min_face_size`` allowed grows with the searched image size.
    ``defaults`` are the model's options from settings."""
    body = validate(Body, fields, defaults)
    t1, t2, t3 = _thresholds(body, fields)
    return FaceOptions(body.min_face_size, (t1, t2, t3), body.max_side, body.min_confidence, body.max_faces)


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


TASK = Task(
    "face-detection",
    (ROUTE,),
    KINDS,
    parse,
    one_model_run(find_faces, decode=True),
    "Face boxes and five landmarks (MTCNN).",
    media=("image",),
    body=Body,
    answer=Answer,
)
