"""Image classification: images -> top_k labels with softmax scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import Image

from edge_mm.runtime.image_models import ImageClassifier
from edge_mm.tasks.fields import int_field


def parse_top_k(payload: Mapping[str, Any], n_labels: int, default: int = 5) -> int:
    top_k = int_field(payload, "top_k", min(default, n_labels), 1, n_labels)
    assert top_k is not None
    return top_k


def top_labels(logits: torch.Tensor, labels: Sequence[str], k: int) -> list[dict[str, Any]]:
    """(C,) logits -> the k best ``{"label", "score", "index"}``, highest score first."""
    probs = logits.float().softmax(-1)
    scores, idx = probs.topk(min(k, len(labels)))
    return [
        {"label": labels[i], "score": round(s, 6), "index": i}
        for s, i in zip(scores.tolist(), idx.tolist(), strict=True)
    ]


def run(model: ImageClassifier, images: list[Image.Image], top_k: int) -> dict[str, Any]:
    outputs = model.classify(images)
    assert len(outputs) == len(images)
    return {"model": model.name, "results": [top_labels(logits, model.labels, top_k) for logits, _ in outputs]}
