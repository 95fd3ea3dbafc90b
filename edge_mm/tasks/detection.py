"""Object detection, native: ``POST /v1/object-detection`` -> labelled boxes in pixels per image.

Any detector kind answers (tasks/object_detection.py ``KINDS``: DETR/YOLOS, your own YOLO export, COCO
SSD). The same models answer DeepStack's ``/v1/vision/detection`` (tasks/deepstack.py) and, for YOLO,
CodeProject.AI's ``/v1/vision/custom/{model}``; this route is the JSON one, with several images, a
label filter and the model's own confidence default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field

from edge_mm.errors import BadInput
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.model_calls import Models
from edge_mm.tasks import object_detection
from edge_mm.tasks.payload import Images, Limits, Payload, images_from
from edge_mm.tasks.schemas import ImageInput, Options, Strict, validate
from edge_mm.tasks.task import ModelRequest, Task

ROUTE = "/v1/object-detection"
KINDS = object_detection.KINDS
MAX_OBJECTS = 300  # per image
DEFAULT_CONFIDENCE = 0.45  # DeepStack's, for a model whose settings give none (DETR/YOLOS)

Probability = Annotated[float, Field(ge=0, le=1)]


class Body(Options, ImageInput):
    model_config = Strict.model_config
    min_confidence: Probability | None = Field(
        None, description="boxes scored lower are left out; default: the model's own (settings), else 0.45"
    )
    labels: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        None, min_length=1, max_length=100, description='answer only these labels, e.g. ["person", "car"]'
    )
    max_objects: int = Field(100, ge=1, le=MAX_OBJECTS, description="most boxes answered per image, best first")


class Box(BaseModel):
    x_min: int
    y_min: int
    x_max: int
    y_max: int


class Detected(BaseModel):
    label: str
    score: float
    box: Box = Field(description="corners in px of the sent image")


class ImageObjects(BaseModel):
    width: int
    height: int
    objects: list[Detected]


class Answer(BaseModel):
    model: str
    results: list[ImageObjects]


@dataclass(frozen=True)
class DetectOptions:
    min_confidence: float
    labels: frozenset[str] | None
    max_objects: int


Request = ModelRequest[Images, DetectOptions]


def parse(payload: Payload, limits: Limits, models: Models) -> Request:
    served = models.get(KINDS, ROUTE, payload.model_name())
    body = validate(Body, payload.fields)
    known = set(served.entry.labels or ())
    unknown = sorted(set(body.labels or ()) - known) if known else []
    if unknown:
        raise BadInput(f"labels {unknown} are not among model {served.name!r}'s labels (GET /v1/models/{served.name})")
    threshold = body.min_confidence
    if threshold is None:
        threshold = float(served.options.get("min_confidence", DEFAULT_CONFIDENCE))
    labels = frozenset(body.labels) if body.labels else None
    return Request(served, images_from(payload, limits), DetectOptions(threshold, labels, body.max_objects))


def objects(found: list[dict[str, Any]], labels: frozenset[str] | None, most: int) -> list[dict[str, Any]]:
    """DeepStack-shaped boxes -> this route's objects, filtered by label, at most ``most``."""
    kept = [p for p in found if labels is None or p["label"] in labels][:most]
    return [
        {
            "label": p["label"],
            "score": p["confidence"],
            "box": {k: p[k] for k in ("x_min", "y_min", "x_max", "y_max")},
        }
        for p in kept
    ]


def run(models: Models, request: Request, deadline: Deadline) -> dict[str, Any]:
    opts = request.options
    # a label filter applied after the detector's own limit could starve it: ask the detector for the cap
    limit = MAX_OBJECTS if opts.labels is not None else opts.max_objects

    def detect(model: Any) -> dict[str, Any]:
        images = request.inputs.decode()
        found = object_detection.detect(model, images, opts.min_confidence, limit, deadline, request.model.options)
        return {
            "model": request.model.name,
            "results": [
                {"width": im.width, "height": im.height, "objects": objects(f, opts.labels, opts.max_objects)}
                for im, f in zip(images, found, strict=True)
            ],
        }

    return models.call(request.model, deadline, detect)


TASK = Task(
    "object-detection",
    (ROUTE,),
    KINDS,
    parse,
    run,
    "Objects with label, score and box in px (COCO SSD, your YOLO export, DETR/YOLOS).",
    media=("image",),
    body=Body,
    answer=Answer,
)
