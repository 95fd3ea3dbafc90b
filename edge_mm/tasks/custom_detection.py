"""Your own detectors: CodeProject.AI Server's ``POST /v1/vision/custom/{model}`` over a ``yolo-detection``
model (an Ultralytics YOLOv5 or YOLOv8/11 ONNX export, runtime/yolo_detector.py).

DeepStack dialect (multipart ``image``, exactly one; optional ``min_confidence``; 400s with
``success: false``). Answers as CodeProject.AI's object detection modules do: ``{success, message,
count, predictions: [{label, confidence, x_min, y_min, x_max, y_max}], inferenceMs, processMs}``,
boxes in integer px of the sent image, best first. The model is the path's ``{model}``: a name
that is not a ``yolo-detection`` model is 404. The same models answer DeepStack's
``/v1/vision/detection`` (tasks/deepstack.py through tasks/object_detection.py).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field

from edge_mm.errors import BadInput
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.model_calls import Models
from edge_mm.tasks.payload import Images, Limits, Payload, images_from
from edge_mm.tasks.schemas import ImageInput, ModelOptions, Prediction, validate
from edge_mm.tasks.task import ModelRequest, Task

if TYPE_CHECKING:  # the runner loads ONNX Runtime: imported when such a model loads, not with the task table
    from edge_mm.runtime.yolo_detector import YoloDetector

ROUTE = "/v1/vision/custom/<model>"
KINDS = ("yolo-detection",)

Probability = Annotated[float, Field(ge=0, le=1)]


class ServeOptions(ModelOptions):
    """A YOLO model's serve-time options (settings); a request's ``min_confidence`` overrides the first."""

    min_confidence: Probability = Field(0.4, description="boxes scored lower are left out (CodeProject.AI's default)")
    iou_threshold: Probability = Field(0.45, description="NMS: a box overlapping a better one of its class more goes")
    max_detections: int = Field(100, ge=1, le=1000, description="most boxes answered per image")


class Body(ImageInput):
    """CodeProject.AI's form: one image, an optional threshold, and DeepStack's ``api_key`` field."""

    min_confidence: Probability | None = Field(None, description="default: the model's min_confidence (0.4)")
    api_key: str | None = Field(None, description="DeepStack's form field for the API key")


class Answer(BaseModel):
    success: Literal[True]
    message: str
    count: int
    predictions: list[Prediction]
    inferenceMs: int  # noqa: N815 - CodeProject.AI's field names
    processMs: int  # noqa: N815


@dataclass(frozen=True)
class DetectOptions:
    min_confidence: float
    iou_threshold: float
    max_detections: int


Request = ModelRequest[Images, DetectOptions]


def serve_options(options: Mapping[str, Any]) -> ServeOptions:
    """The model's serve-time options from its ``options`` (which carry the build-time ones too: labels, image_size)."""
    return ServeOptions.model_validate({k: v for k, v in options.items() if k in ServeOptions.model_fields})


def parse(payload: Payload, limits: Limits, models: Models) -> Request:
    served = models.get(KINDS, ROUTE, payload.model_name())
    body = validate(Body, payload.fields)
    defaults = serve_options(served.options)
    images = images_from(payload, limits)
    if len(images) != 1:
        raise BadInput("send exactly one image")
    threshold = defaults.min_confidence if body.min_confidence is None else body.min_confidence
    return Request(served, images, DetectOptions(threshold, defaults.iou_threshold, defaults.max_detections))


def message(predictions: list[dict[str, Any]]) -> str:
    """CodeProject.AI's summary line: ``"Found person, car..."`` or ``"No objects found"``."""
    if not predictions:
        return "No objects found"
    return "Found " + ", ".join(Counter(p["label"] for p in predictions)) + "..."


def run(models: Models, request: Request, deadline: Deadline) -> dict[str, Any]:
    t0 = time.perf_counter()
    opts = request.options

    def find(model: YoloDetector) -> tuple[list[dict[str, Any]], int]:
        (image,) = request.inputs.decode()
        t_inf = time.perf_counter()
        preds = model.predictions(
            image,
            min_confidence=opts.min_confidence,
            iou_threshold=opts.iou_threshold,
            limit=opts.max_detections,
            deadline=deadline,
        )
        return preds, round((time.perf_counter() - t_inf) * 1000)

    preds, ms = models.call(request.model, deadline, find)
    return {
        "success": True,
        "message": message(preds),
        "count": len(preds),
        "predictions": preds,
        "inferenceMs": ms,
        "processMs": round((time.perf_counter() - t0) * 1000),
    }


TASK = Task(
    "vision-custom",
    (ROUTE,),
    KINDS,
    parse,
    run,
    "CodeProject.AI Server's custom object detection: a YOLO model named in the path.",
    media=("image",),
    dialect="deepstack",
    body=Body,
    answer=Answer,
)
