"""Zero-shot text classification by label similarity with an embeddings model.

Each candidate label is put into a hypothesis template ("This text is about {}."),
embedded, and compared by cosine with the text's embedding. Scores are a softmax
of cosine / temperature over the labels. Label embeddings are cached per model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from edge_mm.errors import Unprocessable
from edge_mm.runtime.text_model import TextModel
from edge_mm.tasks.fields import Limits, float_field, str_field, texts_field

CACHE_SIZE = 4096
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class Request:
    texts: list[str]
    labels: list[str]
    template: str
    temperature: float


def parse(payload: Mapping[str, Any], limits: Limits, default_template: str = "{}") -> Request:
    texts = texts_field(payload, limits)
    labels = texts_field(payload, limits, key="labels")
    if len(set(labels)) != len(labels):
        raise Unprocessable("'labels' has duplicates")
    template = str_field(payload, "hypothesis_template", default_template)
    if template.count("{}") != 1:
        raise Unprocessable("'hypothesis_template' must contain '{}' exactly once, e.g. 'This text is about {}.'")
    temperature = float_field(payload, "temperature", 0.05, 0.001, 100.0)
    return Request(texts, labels, template, temperature)


def _label_vectors(model: TextModel, hypotheses: list[str]) -> torch.Tensor:
    cache: OrderedDict[str, torch.Tensor] = model.cache.setdefault("zero_shot_labels", OrderedDict())
    with _cache_lock:
        missing = [h for h in dict.fromkeys(hypotheses) if h not in cache]
    if missing:
        vectors = model.forward(model.tokenizer.encode(missing).encodings)
        with _cache_lock:
            for h, v in zip(missing, vectors, strict=True):
                cache[h] = v
                if len(cache) > CACHE_SIZE:
                    cache.popitem(last=False)
    with _cache_lock:
        found = [cache.get(h) for h in hypotheses]
    if any(v is None for v in found):  # evicted between the two steps by a concurrent request
        return torch.stack(model.forward(model.tokenizer.encode(hypotheses).encodings))
    return torch.stack([v for v in found if v is not None])


def run(model: TextModel, request: Request) -> dict[str, Any]:
    hypotheses = [request.template.format(label) for label in request.labels]
    labels = _label_vectors(model, hypotheses)  # (labels, dim)
    texts = torch.stack(model.forward(model.tokenizer.encode(request.texts).encodings))  # (texts, dim)
    similarity = texts @ labels.T
    scores = (similarity / request.temperature).softmax(-1)
    results = []
    for sim_row, score_row in zip(similarity.tolist(), scores.tolist(), strict=True):
        ranked = sorted(zip(request.labels, score_row, sim_row, strict=True), key=lambda r: r[1], reverse=True)
        results.append([{"label": lab, "score": round(s, 6), "similarity": round(c, 6)} for lab, s, c in ranked])
    return {"model": model.name, "results": results}
