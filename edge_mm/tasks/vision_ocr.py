"""CodeProject.AI Server's OCR route, ``POST /v1/vision/ocr``, over an ``ocr`` model (tasks/ocr.py).

DeepStack dialect (multipart ``image``, exactly one; 400s with ``success: false``). Answers as
CodeProject.AI's OCR module does: ``{success, predictions: [{label, confidence, x_min, y_min, x_max,
y_max}], inferenceMs}``, each line's text as its label and the integer pixel bounds of its polygon,
lines in reading order. The model's own options (settings) apply; the form takes none.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from edge_mm.errors import BadInput
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.model_calls import Models
from edge_mm.tasks import ocr
from edge_mm.tasks.payload import Limits, Payload, images_from
from edge_mm.tasks.schemas import ImageInput, Prediction, validate
from edge_mm.tasks.task import Task

if TYPE_CHECKING:
    from edge_mm.runtime.ocr import Line

ROUTE = "/v1/vision/ocr"


class Body(ImageInput):
    """CodeProject.AI's form: one image (and DeepStack's ``api_key`` field)."""

    api_key: str | None = Field(None, description="DeepStack's form field for the API key")


class Answer(BaseModel):
    success: Literal[True]
    predictions: list[Prediction]
    inferenceMs: int  # noqa: N815 - CodeProject.AI's field name


def vision_prediction(line: Line) -> dict[str, Any]:
    xs, ys = [p[0] for p in line.box], [p[1] for p in line.box]
    return {
        "label": line.text,
        "confidence": round(line.score, 5),
        "x_min": int(min(xs)),
        "y_min": int(min(ys)),
        "x_max": int(max(xs)),
        "y_max": int(max(ys)),
    }


def parse(payload: Payload, limits: Limits, models: Models) -> ocr.Request:
    served = models.get(ocr.KINDS, ROUTE)
    validate(Body, payload.fields)
    images = images_from(payload, limits)
    if len(images) != 1:
        raise BadInput("send exactly one image")
    return ocr.Request(served, images, ocr.parse_options({}, served.options))


def run(models: Models, request: ocr.Request, deadline: Deadline) -> dict[str, Any]:
    def find(model: Any) -> tuple[list[Line], int]:
        (image,) = request.inputs.decode()
        t0 = time.perf_counter()
        lines = ocr.read(model, image, request.options, deadline)
        return lines, round((time.perf_counter() - t0) * 1000)

    lines, ms = models.call(request.model, deadline, find)
    return {"success": True, "predictions": [vision_prediction(line) for line in lines], "inferenceMs": ms}


TASK = Task(
    "vision-ocr",
    (ROUTE,),
    ocr.KINDS,
    parse,
    run,
    "CodeProject.AI Server's OCR: text lines as predictions.",
    media=("image",),
    dialect="deepstack",
    body=Body,
    answer=Answer,
)
