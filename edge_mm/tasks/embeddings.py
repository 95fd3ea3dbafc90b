"""Sentence embeddings: texts -> L2-normalised vectors (pooling as the checkpoint specifies)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_mm.runtime.text_model import TextModel
from edge_mm.tasks.fields import Limits, texts_field


def parse(payload: Mapping[str, Any], limits: Limits) -> list[str]:
    return texts_field(payload, limits)


def run(model: TextModel, texts: list[str]) -> dict[str, Any]:
    encoded = model.tokenizer.encode(texts)
    vectors = model.forward(encoded.encodings)
    assert len(vectors) == len(texts)
    return {
        "model": model.name,
        "dim": int(vectors[0].shape[-1]),
        "data": [
            {"index": i, "embedding": v.numpy().round(6).tolist(), "tokens": n, "truncated": t}
            for i, (v, n, t) in enumerate(zip(vectors, encoded.lengths, encoded.truncated, strict=True))
        ],
    }
