"""Image embeddings: the classifier's pooled features, L2-normalised, for similarity search."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from edge_mm.runtime.image_models import ImageClassifier


def normalise(features: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(features.float(), dim=-1)


def run(model: ImageClassifier, images: list[Image.Image]) -> dict[str, Any]:
    outputs = model.classify(images)
    assert len(outputs) == len(images)
    vectors = [normalise(features) for _, features in outputs]
    return {
        "model": model.name,
        "dim": int(vectors[0].shape[-1]),
        "data": [{"index": i, "embedding": [round(x, 6) for x in v.tolist()]} for i, v in enumerate(vectors)],
    }
