"""Text classification with any fine-tuned sequence-classification checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from edge_mm.runtime.text_model import TextModel
from edge_mm.tasks.fields import Limits, int_field, texts_field


@dataclass(frozen=True)
class Request:
    texts: list[str]
    top_k: int | None


def parse(payload: Mapping[str, Any], limits: Limits, num_labels: int) -> Request:
    return Request(texts_field(payload, limits), int_field(payload, "top_k", None, 1, num_labels))


def scores(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Per-label probabilities: sigmoid for multi-label checkpoints, else softmax."""
    return logits.sigmoid() if multi_label else logits.softmax(-1)


def run(model: TextModel, request: Request) -> dict[str, Any]:
    encoded = model.tokenizer.encode(request.texts)
    logits = model.forward(encoded.encodings)
    multi = bool(model.entry.preprocessing.get("multi_label", False))
    results = []
    for row, truncated in zip(logits, encoded.truncated, strict=True):
        probs = scores(row, multi).tolist()
        ranked = sorted(zip(model.labels, probs, strict=True), key=lambda r: r[1], reverse=True)
        results.append(
            {
                "labels": [{"label": lab, "score": round(p, 6)} for lab, p in ranked[: request.top_k]],
                "truncated": truncated,
            }
        )
    return {"model": model.name, "results": results}
