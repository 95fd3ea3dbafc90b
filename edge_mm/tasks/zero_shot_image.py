"""Zero-shot image classification from text labels: ConSE (default, offline) or CLIP.

ConSE (Norouzi et al., 2014) needs no image-text training: the classifier's top-T
ImageNet classes, weighted by probability, give a convex combination of their names'
text embeddings; candidate labels are ranked by cosine with it. It only knows what
ImageNet's 1000 classes can describe. CLIP compares learnt image and text embeddings
directly and handles open-ended labels far better, but needs a CLIP checkpoint.

ConSE composes three served models; each is called through its own admission.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from edge_mm.errors import ConfigError
from edge_mm.manifest import ModelEntry
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.model_calls import Models
from edge_mm.tasks.payload import Images, Limits, Payload, images_from
from edge_mm.tasks.schemas import ImageInput, ModelOptions, validate
from edge_mm.tasks.task import ModelRequest, Task
from edge_mm.tasks.zero_shot_text import (
    LabelFields,
    LabelOptions,
    Score,
    Template,
    label_vectors,
    parse_labels,
    ranked,
    softmax,
)

if TYPE_CHECKING:  # imported when such a model loads, not with the task table (CLIP's runner needs torch)
    from edge_mm.runtime.clip import ClipModel
    from edge_mm.runtime.conse import ConseTable

ROUTE = "/v1/zero-shot-image-classification"
KINDS = ("zero-shot-image",)


def load(name: str, entry: ModelEntry, root: Path, device: str, variant: str, max_batch: int) -> Any:
    """The runner for the entry's method: CLIP towers or the ConSE class-name table."""
    method = entry.options.get("method")
    if method == "clip":
        from edge_mm.runtime.clip import ClipModel

        return ClipModel.load(name, entry, root, device, variant, max_batch)
    if method == "conse":
        from edge_mm.runtime.conse import ConseTable

        return ConseTable.load(name, entry, root, device, variant, max_batch)
    raise ConfigError(f"model {name!r}: unknown zero-shot-image method {method!r}; rebuild")


class ServeOptions(ModelOptions):
    """A zero-shot-image model's serve-time options (settings); a request may override each."""

    hypothesis_template: Template | None = Field(
        None,
        description="plain text with one '{}' where the label goes; default: '{}' (ConSE), 'a photo of {}.' (CLIP)",
    )
    temperature: float | None = Field(
        None, ge=0.001, le=100.0, description="softmax temperature over the labels; default: 0.05 (ConSE), 1 (CLIP)"
    )
    top_t: int = Field(10, ge=1, le=1000, description="ConSE: ImageNet classes mixed into the image's vector")


class Body(LabelFields, ImageInput):
    top_t: int | None = Field(None, ge=1, le=1000, description="ConSE: ImageNet classes mixed into the image's vector")


class Answer(BaseModel):
    model: str
    method: str  # conse | clip
    results: list[list[Score]]


def parse_options(fields: Mapping[str, Any], limits: Limits, defaults: Mapping[str, Any]) -> LabelOptions:
    """``labels``, ``hypothesis_template``, ``temperature``, ``top_t``; ``defaults``: the model's options."""
    body = validate(Body, fields)
    clip = defaults.get("method") == "clip"
    default_template = defaults.get("hypothesis_template") or ("a photo of {}." if clip else "{}")
    labels, hypotheses = parse_labels(body, limits, str(default_template), "a photo of {}.")
    default_t = defaults.get("temperature") or (1.0 if clip else 0.05)
    temperature = float(default_t) if body.temperature is None else body.temperature
    top_t = int(defaults["top_t"]) if body.top_t is None else body.top_t
    return LabelOptions(labels, hypotheses, temperature, top_t)


Request = ModelRequest[Images, LabelOptions]


def parse(payload: Payload, limits: Limits, models: Models) -> Request:
    served = models.get(KINDS, ROUTE, payload.model_name())
    options = parse_options(payload.fields, limits, served.options)
    return Request(served, images_from(payload, limits), options)


def conse_vector(probs: np.ndarray, class_embeddings: np.ndarray, top_t: int) -> np.ndarray:
    """(C,) probabilities, (C, dim) class-name embeddings -> (dim,) float32 unit vector:
    the probability-weighted mean of the top-T classes' embeddings (ties: the lower class index)."""
    p = np.asarray(probs, dtype=np.float32)
    idx = np.argsort(-p, kind="stable")[: min(top_t, len(p))]
    weights = p[idx] / max(float(p[idx].sum()), 1e-12)
    v = (weights[:, None] * np.asarray(class_embeddings, dtype=np.float32)[idx]).sum(0)
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def as_numpy(x: Any) -> np.ndarray:
    """float32 numpy of a model output: numpy already (ONNX Runtime) or a tensor (TorchScript, any device)."""
    if isinstance(x, np.ndarray):
        return x.astype(np.float32, copy=False)
    return np.asarray(x.detach().float().cpu().numpy())


def run_conse(models: Models, request: Request, deadline: Deadline) -> dict[str, Any]:
    """ConSE's arithmetic is numpy, whichever backend serves the text model and the classifier: a server
    whose partners run on ONNX Runtime never imports torch."""
    table: ConseTable = request.model.runner
    classifier = models.get(("image-classification",), ROUTE, table.classifier)
    text = models.get(("embeddings",), ROUTE, table.text_model)
    opts = request.options
    label_vecs = as_numpy(models.call(text, deadline, lambda m: label_vectors(m, opts.hypotheses, deadline)))
    outputs = models.call(classifier, deadline, lambda m: m.classify(request.inputs.decode(), deadline))
    results = []
    for logits, _ in outputs:
        v = conse_vector(softmax(as_numpy(logits)), table.class_embeddings, opts.top_t)
        similarity = label_vecs @ v
        results.append(ranked(opts.labels, similarity, softmax(similarity / opts.temperature)))
    return {"model": table.name, "method": "conse", "results": results}


def clip_scores(
    model: ClipModel, images: list[Image.Image], opts: LabelOptions, deadline: Deadline | None = None
) -> dict[str, Any]:
    label_vecs = model.embed_texts(opts.hypotheses, deadline)
    image_vecs = model.embed_images(images, deadline)
    results = []
    for v in image_vecs:
        similarity = label_vecs @ v
        results.append(ranked(opts.labels, similarity, (similarity * model.logit_scale / opts.temperature).softmax(-1)))
    return {"model": model.name, "method": "clip", "results": results}


def run(models: Models, request: Request, deadline: Deadline) -> dict[str, Any]:
    from edge_mm.runtime.conse import ConseTable  # torch-free, unlike runtime/clip.py

    if isinstance(request.model.runner, ConseTable):
        return run_conse(models, request, deadline)
    return models.call(
        request.model, deadline, lambda m: clip_scores(m, request.inputs.decode(), request.options, deadline)
    )


TASK = Task(
    "zero-shot-image-classification",
    (ROUTE,),
    KINDS,
    parse,
    run,
    "Rank candidate text labels for images (ConSE or CLIP).",
    media=("image",),
    body=Body,
    answer=Answer,
)
