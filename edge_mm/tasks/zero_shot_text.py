"""Zero-shot text classification by label similarity with an embeddings model.

Each candidate label is put into a hypothesis template ("This text is about {}."),
embedded, and compared by cosine with the text's embedding. Scores are a softmax
of cosine / temperature over the labels. Label embeddings are cached per model,
bounded in bytes. The template is plain text with one ``{}`` placeholder, never a
format string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BaseModel, Field
from pydantic_core import PydanticCustomError

from edge_mm.errors import RequestTooLarge, Unprocessable
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.model_calls import Models
from edge_mm.runtime.text_model import TextModel
from edge_mm.runtime.vector_cache import VectorCache
from edge_mm.tasks.payload import Limits, Payload
from edge_mm.tasks.schemas import ModelOptions, Options, Texts, UnicodeStr, check_texts, validate
from edge_mm.tasks.task import ModelRequest, Task, one_model_run

ROUTE = "/v1/zero-shot-classification"
KINDS = ("embeddings",)


@dataclass(frozen=True)
class LabelOptions:
    """Candidate labels, each filled into the template, and the softmax temperature."""

    labels: list[str]
    hypotheses: list[str]
    temperature: float
    top_t: int = 10  # zero-shot images (ConSE): classes mixed into the image's vector


def _one_placeholder(template: str) -> str:
    if template.count("{}") != 1:
        raise PydanticCustomError("template", "must contain '{}' exactly once, e.g. 'This text is about {}.'")
    return template


Template = Annotated[UnicodeStr, AfterValidator(_one_placeholder)]


class ServeOptions(ModelOptions):
    """An embeddings model's serve-time options (settings): how zero-shot text labels are compared."""

    hypothesis_template: Template = Field(
        "{}", description="zero-shot text: plain text with one '{}' where the label goes, when a request names none"
    )


class LabelFields(Options):
    """Candidate labels and how they are compared (zero-shot text and image)."""

    labels: Texts = Field(description="candidate labels, distinct")
    hypothesis_template: UnicodeStr | None = Field(
        None, description="plain text with one '{}' where the label goes; default: the model's"
    )
    temperature: float | None = Field(None, ge=0.001, le=100.0, description="softmax temperature over the labels")


class Body(LabelFields):
    inputs: Texts


class Score(BaseModel):
    label: str
    score: float
    similarity: float


class Answer(BaseModel):
    model: str
    results: list[list[Score]]


Request = ModelRequest[list[str], LabelOptions]


def parse_labels(body: LabelFields, limits: Limits, default_template: str, example: str) -> tuple[list[str], list[str]]:
    """(labels, hypotheses): distinct labels, each put into the template; 413 when a hypothesis
    is longer than ``max_text_chars`` (the template counts against it)."""
    labels = check_texts(body.labels, "labels", limits.max_items, limits.max_label_chars)
    if len(set(labels)) != len(labels):
        raise Unprocessable("'labels' has duplicates")
    template = default_template if body.hypothesis_template is None else body.hypothesis_template
    if template.count("{}") != 1:
        raise Unprocessable(f"'hypothesis_template' must contain '{{}}' exactly once, e.g. {example!r}")
    hypotheses = [fill(template, label) for label in labels]
    longest = max(hypotheses, key=len)
    if len(longest) > limits.max_text_chars:
        raise RequestTooLarge(
            f"'hypothesis_template' with a label is {len(longest)} characters; the limit is {limits.max_text_chars}"
        )
    return labels, hypotheses


def fill(template: str, label: str) -> str:
    """``template`` with its one ``{}`` replaced by ``label``; nothing else in it is interpreted."""
    before, after = template.split("{}")
    return before + label + after


def parse(payload: Payload, limits: Limits, models: Models) -> Request:
    served = models.get(KINDS, ROUTE, payload.model_name())
    body = validate(Body, payload.fields)
    texts = check_texts(body.inputs, "inputs", limits.max_items, limits.max_text_chars)
    default_template = str(served.options["hypothesis_template"])
    labels, hypotheses = parse_labels(body, limits, default_template, "This text is about {}.")
    temperature = 0.05 if body.temperature is None else body.temperature
    return Request(served, texts, LabelOptions(labels, hypotheses, temperature))


def stack(vectors: list[Any]) -> Any:
    """Stack torch tensors with torch, numpy arrays (the ONNX Runtime path) with numpy."""
    if isinstance(vectors[0], np.ndarray):
        return np.stack(vectors)
    import torch

    return torch.stack(vectors)


def label_vectors(model: TextModel, hypotheses: list[str], deadline: Deadline | None = None) -> Any:
    """(len(hypotheses), dim): cached embeddings of the filled-in templates (a tensor, or numpy)."""
    cache: VectorCache = model.cache.setdefault("zero_shot_labels", VectorCache())
    missing = cache.missing(hypotheses)
    if missing:
        for h, v in zip(missing, model.forward(model.tokenizer.encode(missing).encodings, deadline), strict=True):
            cache.put(h, v)
    found = cache.get_all(hypotheses)
    if found is None:  # evicted between the two steps by a concurrent request
        return stack(model.forward(model.tokenizer.encode(hypotheses).encodings, deadline))
    return stack(found)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def ranked(labels: list[str], similarity: Any, scores: Any) -> list[dict[str, Any]]:
    rows = sorted(zip(labels, scores.tolist(), similarity.tolist(), strict=True), key=lambda r: r[1], reverse=True)
    return [{"label": lab, "score": round(s, 6), "similarity": round(c, 6)} for lab, s, c in rows]


def classify(
    model: TextModel, texts: list[str], opts: LabelOptions, deadline: Deadline | None = None
) -> dict[str, Any]:
    labels = label_vectors(model, opts.hypotheses, deadline)  # (labels, dim)
    vectors = stack(model.forward(model.tokenizer.encode(texts).encodings, deadline))  # (texts, dim)
    similarity = vectors @ labels.T
    if isinstance(similarity, np.ndarray):
        scores = softmax(similarity / np.float32(opts.temperature))
    else:
        scores = (similarity / opts.temperature).softmax(-1)
    results = [ranked(opts.labels, sim, sc) for sim, sc in zip(similarity, scores, strict=True)]
    return {"model": model.name, "results": results}


TASK = Task(
    "zero-shot-classification",
    (ROUTE,),
    KINDS,
    parse,
    one_model_run(classify),
    "Rank candidate labels for texts by similarity.",
    body=Body,
    answer=Answer,
)
