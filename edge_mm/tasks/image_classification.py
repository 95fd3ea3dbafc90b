"""Image classification: images -> top_k labels with softmax scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from edge_mm.errors import Unprocessable
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.image_classifier import ImageClassifier
from edge_mm.runtime.model_calls import Models
from edge_mm.tasks.payload import Images, Limits, Payload, images_from
from edge_mm.tasks.schemas import ImageInput, ModelOptions, Options, validate
from edge_mm.tasks.task import ModelRequest, Task, one_model_run

ROUTE = "/v1/image-classification"
KINDS = ("image-classification",)


class ServeOptions(ModelOptions):
    """An image-classification model's serve-time options (settings)."""

    top_k: int = Field(5, ge=1, description="labels per image when a request names none (capped at the model's)")


class Body(Options, ImageInput):
    top_k: int | None = Field(None, ge=1, description="labels per image (at most the model's); default: the model's, 5")


class Label(BaseModel):
    label: str
    score: float
    index: int


class Answer(BaseModel):
    model: str
    results: list[list[Label]]


Request = ModelRequest[Images, int]  # options: top_k


def parse_top_k(fields: Any, n_labels: int, default: int = 5) -> int:
    """``top_k`` in 1..n_labels; by default ``default`` capped by the label count."""
    top_k = validate(Body, fields).top_k
    if top_k is None:
        return max(1, min(default, n_labels))
    if top_k > n_labels:
        raise Unprocessable(f"'top_k' must be at most {n_labels}, the model's label count (got {top_k})")
    return top_k


def parse(payload: Payload, limits: Limits, models: Models) -> Request:
    served = models.get(KINDS, ROUTE, payload.model_name())
    top_k = parse_top_k(payload.fields, len(served.entry.labels or []), int(served.options["top_k"]))
    return Request(served, images_from(payload, limits), top_k)


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in float32 (the ONNX Runtime path's postprocessing, no torch)."""
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def top_labels(logits: Any, labels: Sequence[str], k: int) -> list[dict[str, Any]]:
    """(C,) logits (torch tensor, or numpy from ONNX Runtime) -> the k best ``{"label", "score", "index"}``,
    highest score first."""
    if isinstance(logits, np.ndarray):
        p = softmax(logits.astype(np.float32))
        top = np.argsort(-p, kind="stable")[: min(k, len(labels))]
        scores, idx = p[top], top
    else:
        scores, idx = logits.float().softmax(-1).topk(min(k, len(labels)))
    return [
        {"label": labels[i], "score": round(s, 6), "index": i}
        for s, i in zip(scores.tolist(), idx.tolist(), strict=True)
    ]


def classify(
    model: ImageClassifier, images: list[Image.Image], top_k: int, deadline: Deadline | None = None
) -> dict[str, Any]:
    outputs = model.classify(images, deadline)
    assert len(outputs) == len(images)
    return {"model": model.name, "results": [top_labels(logits, model.labels, top_k) for logits, _ in outputs]}


TASK = Task(
    "image-classification",
    (ROUTE,),
    KINDS,
    parse,
    one_model_run(classify, decode=True),
    "ImageNet-style labels for images.",
    media=("image",),
    body=Body,
    answer=Answer,
)
