"""Text classification with any fine-tuned sequence-classification checkpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from edge_mm.errors import Unprocessable
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.model_calls import Models
from edge_mm.runtime.text_model import TextModel
from edge_mm.tasks.payload import Limits, Payload
from edge_mm.tasks.schemas import ModelOptions, Options, Texts, check_texts, validate
from edge_mm.tasks.task import ModelRequest, Task, one_model_run

if TYPE_CHECKING:
    import torch

ROUTE = "/v1/text-classification"
KINDS = ("text-classification",)


class ServeOptions(ModelOptions):
    """A text-classification model's serve-time options (settings)."""

    top_k: int | None = Field(
        None,
        ge=1,
        description="labels per text when a request names none, best first (capped at the model's); default: all",
    )


class Body(Options):
    inputs: Texts
    top_k: int | None = Field(None, ge=1, description="labels per text, best first (at most the model's); default: all")


class Label(BaseModel):
    label: str
    score: float


class Result(BaseModel):
    labels: list[Label]
    truncated: bool


class Answer(BaseModel):
    model: str
    results: list[Result]


Request = ModelRequest[list[str], int | None]  # options: top_k (None: every label)


def parse(payload: Payload, limits: Limits, models: Models) -> Request:
    served = models.get(KINDS, ROUTE, payload.model_name())
    n_labels = len(served.entry.labels or [])
    body = validate(Body, payload.fields)
    if body.top_k is not None and body.top_k > n_labels:
        raise Unprocessable(f"'top_k' must be at most {n_labels}, the model's label count (got {body.top_k})")
    top_k = body.top_k if body.top_k is not None else served.options["top_k"]
    texts = check_texts(body.inputs, "inputs", limits.max_items, limits.max_text_chars)
    return Request(served, texts, None if top_k is None else min(top_k, n_labels))


def scores(logits: Any, multi_label: bool) -> torch.Tensor:
    """Per-label probabilities: sigmoid for multi-label checkpoints, else softmax (torch; ONNX Runtime's
    numpy logits are viewed as a tensor)."""
    import torch

    logits = torch.as_tensor(logits)
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


TASK = Task(
    "text-classification",
    (ROUTE,),
    KINDS,
    parse,
    one_model_run(classify),
    "Labels for texts from a fine-tuned classifier.",
    body=Body,
    answer=Answer,
)
