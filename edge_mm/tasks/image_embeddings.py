"""Image embeddings: the classifier's pooled features, L2-normalised, for similarity search."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel

from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.image_classifier import ImageClassifier
from edge_mm.runtime.model_calls import Models
from edge_mm.tasks.payload import Images, Limits, Payload, images_from
from edge_mm.tasks.schemas import ImageInput, Options, validate
from edge_mm.tasks.task import ModelRequest, Task

ROUTE = "/v1/image-embeddings"
KINDS = ("image-classification",)


class Body(Options, ImageInput):
    pass


class Vector(BaseModel):
    index: int
    embedding: list[float]


class Answer(BaseModel):
    model: str
    dim: int
    data: list[Vector]


Request = ModelRequest[Images, None]


def parse(payload: Payload, limits: Limits, models: Models) -> Request:
    served = models.get(KINDS, ROUTE, payload.model_name())
    validate(Body, payload.fields)
    return Request(served, images_from(payload, limits), None)


def normalise(features: Any) -> Any:
    """L2-normalised float32 (torch ``F.normalize``; numpy, with its eps, on the ONNX Runtime path)."""
    if isinstance(features, np.ndarray):
        f = features.astype(np.float32)
        return f / max(float(np.linalg.norm(f)), 1e-12)
    import torch

    return torch.nn.functional.normalize(features.float(), dim=-1)


def embed(model: ImageClassifier, images: list[Image.Image], deadline: Deadline | None = None) -> dict[str, Any]:
    outputs = model.classify(images, deadline)
    assert len(outputs) == len(images)
    vectors = [normalise(features) for _, features in outputs]
    return {
        "model": model.name,
        "dim": int(vectors[0].shape[-1]),
        "data": [{"index": i, "embedding": [round(x, 6) for x in v.tolist()]} for i, v in enumerate(vectors)],
    }


def run(models: Models, request: Request, deadline: Deadline) -> dict[str, Any]:
    return models.call(request.model, deadline, lambda m: embed(m, request.inputs.decode(), deadline))


TASK = Task(
    "image-embeddings",
    (ROUTE,),
    KINDS,
    parse,
    run,
    "L2-normalised image feature vectors.",
    media=("image",),
    body=Body,
    answer=Answer,
)
