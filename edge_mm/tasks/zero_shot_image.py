"""Zero-shot image classification from text labels: ConSE (default, offline) or CLIP.

ConSE (Norouzi et al., 2014) needs no image-text training: the classifier's top-T
ImageNet classes, weighted by probability, give a convex combination of their names'
text embeddings; candidate labels are ranked by cosine with it. It only knows what
ImageNet's 1000 classes can describe. CLIP compares learnt image and text embeddings
directly and handles open-ended labels far better, but needs a CLIP checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from edge_mm.errors import Unprocessable
from edge_mm.runtime.image_models import ClipModel, ImageClassifier
from edge_mm.runtime.pipeline_models import ConseModel
from edge_mm.runtime.text_model import TextModel
from edge_mm.tasks.fields import Limits, float_field, int_field, str_field, texts_field
from edge_mm.tasks.zero_shot_text import _label_vectors


@dataclass(frozen=True)
class Request:
    labels: list[str]
    template: str
    temperature: float
    top_t: int


def parse(payload: Mapping[str, Any], limits: Limits, options: Mapping[str, Any]) -> Request:
    labels = texts_field(payload, limits, key="labels")
    if len(set(labels)) != len(labels):
        raise Unprocessable("'labels' has duplicates")
    template = str_field(payload, "hypothesis_template", str(options.get("hypothesis_template", "{}")))
    if template.count("{}") != 1:
        raise Unprocessable("'hypothesis_template' must contain '{}' exactly once, e.g. 'a photo of {}.'")
    default_t = 1.0 if options.get("method") == "clip" else float(options.get("temperature", 0.05))
    temperature = float_field(payload, "temperature", default_t, 0.001, 100.0)
    top_t = int_field(payload, "top_t", int(options.get("top_t", 10)), 1, 1000) or 10
    return Request(labels, template, temperature, top_t)


def conse_vector(probs: torch.Tensor, class_embeddings: torch.Tensor, top_t: int) -> torch.Tensor:
    """(C,) probabilities, (C, dim) class-name embeddings -> (dim,) unit vector:
    the probability-weighted mean of the top-T classes' embeddings."""
    p, idx = probs.float().topk(min(top_t, len(probs)))
    weights = p / p.sum().clamp(min=1e-12)
    return torch.nn.functional.normalize((weights[:, None] * class_embeddings[idx].float()).sum(0), dim=-1)


def ranked(labels: list[str], similarity: torch.Tensor, scores: torch.Tensor) -> list[dict[str, Any]]:
    rows = sorted(zip(labels, scores.tolist(), similarity.tolist(), strict=True), key=lambda r: r[1], reverse=True)
    return [{"label": lab, "score": round(s, 6), "similarity": round(c, 6)} for lab, s, c in rows]


def run_conse(
    model: ConseModel, classifier: ImageClassifier, text: TextModel, images: list[Image.Image], req: Request
) -> dict[str, Any]:
    label_vecs = _label_vectors(text, [req.template.format(x) for x in req.labels])  # (L, dim)
    results = []
    for logits, _ in classifier.classify(images):
        v = conse_vector(logits.softmax(-1), model.class_embeddings, req.top_t)
        similarity = label_vecs @ v
        results.append(ranked(req.labels, similarity, (similarity / req.temperature).softmax(-1)))
    return {"model": model.name, "method": "conse", "results": results}


def run_clip(model: ClipModel, images: list[Image.Image], req: Request) -> dict[str, Any]:
    label_vecs = model.embed_texts([req.template.format(x) for x in req.labels])
    image_vecs = model.embed_images(images)
    results = []
    for v in image_vecs:
        similarity = label_vecs @ v
        results.append(ranked(req.labels, similarity, (similarity * model.logit_scale / req.temperature).softmax(-1)))
    return {"model": model.name, "method": "clip", "results": results}
