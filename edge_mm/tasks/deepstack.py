"""The DeepStack dialect, for NVRs and home-automation hubs: /v1/vision/face, /scene, /detection.

Multipart field ``image`` (exactly one), optional ``min_confidence`` (0-1). Answers
``{success, predictions: [{label, confidence, x_min, y_min, x_max, y_max}]}`` with boxes
in integer pixels, sorted by confidence (highest first) and capped. The error body and
the form-field API key live with the blueprint (api/deepstack.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from edge_mm.errors import BadInput, NotImplementedHere
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.model_calls import Models
from edge_mm.tasks import face_detection, image_classification, object_detection
from edge_mm.tasks.payload import Images, Limits, Payload, images_from
from edge_mm.tasks.schemas import ImageInput, Prediction, validate
from edge_mm.tasks.task import ModelRequest, Task

if TYPE_CHECKING:
    from edge_mm.runtime.mtcnn import Face

MAX_PREDICTIONS = 20


class Body(ImageInput):
    """DeepStack's form: one image, an optional threshold, and its ``api_key`` field."""

    min_confidence: float | None = Field(None, ge=0, le=1, description="default 0.4 (face), 0.45 (detection)")
    api_key: str | None = Field(None, description="DeepStack's form field for the API key")


class Predictions(BaseModel):
    success: Literal[True]
    predictions: list[Prediction]


class Scene(BaseModel):
    success: Literal[True]
    label: str
    confidence: float


def min_confidence(fields: Mapping[str, Any], default: float) -> float:
    value = validate(Body, fields).min_confidence
    return default if value is None else value


def face_predictions(faces: list[Face], threshold: float, limit: int = MAX_PREDICTIONS) -> list[dict[str, Any]]:
    preds: list[dict[str, Any]] = [
        {
            "label": "face",
            "confidence": round(f.confidence, 6),
            "x_min": int(round(f.box[0])),
            "y_min": int(round(f.box[1])),
            "x_max": int(round(f.box[2])),
            "y_max": int(round(f.box[3])),
        }
        for f in faces
        if f.confidence >= threshold
    ]
    return sorted(preds, key=lambda p: p["confidence"], reverse=True)[:limit]


def success(predictions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"success": True, "predictions": predictions}


Request = ModelRequest[Images, float]  # inputs: exactly one image; options: the confidence threshold


def _one_image(payload: Payload, limits: Limits) -> Images:
    images = images_from(payload, limits)
    if len(images) != 1:
        raise BadInput("send exactly one image")
    return images


def parse_face(payload: Payload, limits: Limits, models: Models) -> Request:
    served = models.get(face_detection.KINDS, "/v1/vision/face")
    return Request(served, _one_image(payload, limits), min_confidence(payload.fields, 0.4))


def run_face(models: Models, request: Request, deadline: Deadline) -> dict[str, Any]:
    # The model's own options apply, except its confidence cut: DeepStack's threshold filters, once.
    options = face_detection.parse_options({"min_confidence": 0.0}, request.model.options)

    def find(model: Any) -> list[Face]:
        (image,) = request.inputs.decode()
        return face_detection.detect(model, image, options, deadline)

    faces = models.call(request.model, deadline, find)
    return success(face_predictions(faces, request.options))


def parse_scene(payload: Payload, limits: Limits, models: Models) -> Request:
    served = models.get(image_classification.KINDS, "/v1/vision/scene")
    validate(Body, payload.fields)
    return Request(served, _one_image(payload, limits), 0.0)


def run_scene(models: Models, request: Request, deadline: Deadline) -> dict[str, Any]:
    ((logits, _),) = models.call(request.model, deadline, lambda m: m.classify(request.inputs.decode(), deadline))
    top = image_classification.top_labels(logits, request.model.runner.labels, 1)[0]
    return {"success": True, "label": top["label"], "confidence": top["score"]}


def parse_detection(payload: Payload, limits: Limits, models: Models) -> Request:
    served = models.find(object_detection.KINDS, "/v1/vision/detection")
    if served is None:
        raise NotImplementedHere(
            "object detection is not configured: add an object-detection model (an HF DETR or YOLOS checkpoint) "
            "or a yolo-detection model (an Ultralytics ONNX export) or an ssd-detection model (COCO SSD MobileNet v2, "
            "the commented coco-ssd block) "
            "to settings.toml and run 'edge-mm build'"
        )
    return Request(served, _one_image(payload, limits), min_confidence(payload.fields, 0.45))


def run_detection(models: Models, request: Request, deadline: Deadline) -> dict[str, Any]:
    def detect(model: Any) -> list[list[dict[str, Any]]]:
        images = request.inputs.decode()
        return object_detection.detect(model, images, request.options, MAX_PREDICTIONS, deadline, request.model.options)

    (preds,) = models.call(request.model, deadline, detect)
    return success(preds)


def _task(
    name: str, route: str, kinds: tuple[str, ...], parse: Any, run: Any, summary: str, answer: type[BaseModel]
) -> Task:
    return Task(name, (route,), kinds, parse, run, summary, ("image",), "deepstack", Body, answer)


TASKS = (
    _task(
        "deepstack-face",
        "/v1/vision/face",
        face_detection.KINDS,
        parse_face,
        run_face,
        "DeepStack face detection.",
        Predictions,
    ),
    _task(
        "deepstack-scene",
        "/v1/vision/scene",
        image_classification.KINDS,
        parse_scene,
        run_scene,
        "DeepStack scene recognition (top ImageNet label).",
        Scene,
    ),
    _task(
        "deepstack-detection",
        "/v1/vision/detection",
        object_detection.KINDS,
        parse_detection,
        run_detection,
        "DeepStack object detection (needs an object-detection model).",
        Predictions,
    ),
)
