"""Sentence embeddings: texts -> L2-normalised vectors (pooling as the checkpoint specifies)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.models import Models
from edge_mm.runtime.registry import Served
from edge_mm.runtime.text_model import TextModel
from edge_mm.tasks.fields import texts_field
from edge_mm.tasks.payload import Limits, Payload
from edge_mm.tasks.task import Task

ROUTE = "/v1/embeddings"
KINDS = ("embeddings",)


@dataclass(frozen=True)
class Request:
    model: Served
    texts: list[str]


def parse(payload: Payload, limits: Limits, models: Models) -> Request:
    served = models.get(KINDS, ROUTE, payload.model_name())
    return Request(served, texts_field(payload.fields, limits))


def embed(model: TextModel, texts: list[str], deadline: Deadline | None = None) -> dict[str, Any]:
    encoded = model.tokenizer.encode(texts)
    vectors = model.forward(encoded.encodings, deadline)
    assert len(vectors) == len(texts)
    return {
        "model": model.name,
        "dim": int(vectors[0].shape[-1]),
        "data": [
            {"index": i, "embedding": v.numpy().round(6).tolist(), "tokens": n, "truncated": t}
            for i, (v, n, t) in enumerate(zip(vectors, encoded.lengths, encoded.truncated, strict=True))
        ],
    }


def run(models: Models, request: Request, deadline: Deadline) -> dict[str, Any]:
    return models.call(request.model, deadline, lambda m: embed(m, request.texts, deadline))


TASK = Task("embeddings", (ROUTE,), KINDS, parse, run, "Sentence embeddings (L2-normalised).")
