"""OCR: images -> text lines with score and box (PP-OCRv6 detection + recognition, runtime/ocr.py).

``POST /v1/ocr``: lines with text, score and a four-corner polygon in pixels, in reading order.
CodeProject.AI's ``POST /v1/vision/ocr`` over the same model is tasks/vision_ocr.py.
"""

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

if TYPE_CHECKING:  # the runner loads ONNX Runtime: imported when such a model loads, not with the task table
    from edge_mm.runtime.ocr import Line, OcrReader

ROUTE = "/v1/ocr"
KINDS = ("ocr",)
MAX_SIDE = 4096  # px: the detector's longest side at most (the decoded image is bounded by the pixel budget)

Probability = Annotated[float, Field(ge=0, le=1)]


@dataclass(frozen=True)
class OcrOptions:
    max_side: int
    max_lines: int
    min_score: float


class ServeOptions(ModelOptions):
    """An OCR model's serve-time options (settings); a request may override each."""

    max_side: int = Field(2000, ge=64, le=MAX_SIDE, description="px; the detector sees the image at most this long")
    max_lines: int = Field(100, ge=1, le=1000, description="most text boxes read per image (reading order)")
    min_score: Probability = Field(0.5, description="lines read with a lower mean character score are left out")


class Body(ServeOptions, Options, ImageInput):
    model_config = Strict.model_config  # a request: unknown fields ignored, unlike settings


class LineJson(BaseModel):
    text: str
    score: float = Field(description="mean probability of the line's characters")
    box: list[list[float]] = Field(description="four [x, y] corners in px, clockwise from the top-left")
    box_score: float = Field(description="the detector's mean text probability inside the box")


class ImageLines(BaseModel):
    width: int
    height: int
    text: str = Field(description="the lines joined by newlines")
    lines: list[LineJson]


class Answer(BaseModel):
    model: str
    results: list[ImageLines]


def parse_options(fields: Mapping[str, Any], defaults: Mapping[str, Any]) -> OcrOptions:
    """Options: ``max_side`` (px), ``max_lines``, ``min_score``; ``defaults`` are the model's from settings."""
    body = validate(Body, fields, defaults)
    return OcrOptions(body.max_side, body.max_lines, body.min_score)


Request = ModelRequest[Images, OcrOptions]


def parse(payload: Payload, limits: Limits, models: Models) -> Request:
    served = models.get(KINDS, ROUTE, payload.model_name())
    return Request(served, images_from(payload, limits), parse_options(payload.fields, served.options))


def line_json(line: Line) -> dict[str, Any]:
    return {
        "text": line.text,
        "score": round(line.score, 5),
        "box": [[round(x, 1), round(y, 1)] for x, y in line.box],
        "box_score": round(line.box_score, 5),
    }


def read(model: OcrReader, image: Image.Image, options: OcrOptions, deadline: Deadline | None = None) -> list[Line]:
    return model.read(
        image,
        max_side=options.max_side,
        max_lines=options.max_lines,
        min_score=options.min_score,
        deadline=deadline,
    )


def read_images(
    model: OcrReader, images: list[Image.Image], options: OcrOptions, deadline: Deadline | None = None
) -> dict[str, Any]:
    results = []
    for image in images:
        lines = read(model, image, options, deadline)
        results.append(
            {
                "width": image.width,
                "height": image.height,
                "text": "\n".join(line.text for line in lines),
                "lines": [line_json(line) for line in lines],
            }
        )
    return {"model": model.name, "results": results}


TASK = Task(
    "ocr",
    (ROUTE,),
    KINDS,
    parse,
    one_model_run(read_images, decode=True),
    "Text lines with score and box (PP-OCRv6).",
    media=("image",),
    body=Body,
    answer=Answer,
)
