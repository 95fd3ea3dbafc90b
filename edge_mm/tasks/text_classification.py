"""Text classification with any fine-tuned sequence-classification checkpoint."""

from __future__ import annotations

from typing import Any

import torch

from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.models import Models
from edge_mm.runtime.text_model import TextModel
from edge_mm.tasks.fields import int_field, texts_field
from edge_mm.tasks.payload import Limits, Payload
from edge_mm.tasks.task import ModelRequest, Task

ROUTE = "/v1/text-classification"
KINDS = ("text-classification",)


Request = ModelRequest[list[str], int | None]  # options: top_k (None: every label)


def parse(payload: Payload, limits: Limits, models: Models) -> Request:
    served = models.get(KINDS, ROUTE, payload.model_name())
    n_labels = len(served.entry.labels or [])
    return Request(served, texts_field(payload.fields, limits), int_field(payload.fields, "top_k", None, 1, n_labels))


def scores(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Per-label probabilities: sigmoid for multi-label checkpoints, else softmax."""
    return logits.sigmoid() if multi_label else logits.softmax(-1)


def classify(model: TextModel, texts: list[str], top_k: int | None, deadline: Deadline | None = None) -> dict[str, Any]:
    encoded = model.tokenizer.encode(texts)
    logits = model.forward(encoded.encodings, deadline)
    multi = bool(model.entry.preprocessing.get("multi_label", False))
    results = []
    for row, truncated in zip(logits, encoded.truncated, strict=True):
        probs = scores(row, multi).tolist()
        ranked = sorted(zip(model.labels, probs, strict=True), key=lambda r: r[1], reverse=True)
        results.append(
            {"labels": [{"label": lab, "score": round(p, 6)} for lab, p in ranked[:top_k]], "truncated": truncated}
        )
    return {"model": model.name, "results": results}


def run(models: Models, request: Request, deadline: Deadline) -> dict[str, Any]:
    return models.call(request.model, deadline, lambda m: classify(m, request.inputs, request.options, deadline))


TASK = Task("text-classification", (ROUTE,), KINDS, parse, run, "Labels for texts from a fine-tuned classifier.")
