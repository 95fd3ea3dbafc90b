"""Sentence embeddings: texts -> L2-normalised vectors (pooling as the checkpoint specifies).

The body also speaks OpenAI's embeddings API: ``input`` is accepted for ``inputs``,
``encoding_format`` may be ``"base64"`` (little-endian float32, as OpenAI sends it),
``dimensions`` must equal the model's size, ``user`` is ignored; the answer carries
OpenAI's ``object``, ``data[].object`` and ``usage`` beside edge-mm's own fields.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_mm.errors import Unprocessable
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.models import Models
from edge_mm.runtime.registry import Served
from edge_mm.runtime.text_model import TextModel
from edge_mm.tasks.fields import int_field, str_field, texts_field
from edge_mm.tasks.payload import Limits, Payload
from edge_mm.tasks.task import Task

ROUTE = "/v1/embeddings"
KINDS = ("embeddings",)
ENCODINGS = ("float", "base64")


@dataclass(frozen=True)
class Request:
    model: Served
    texts: list[str]
    encoding: str = "float"
    dimensions: int | None = None


def parse(payload: Payload, limits: Limits, models: Models) -> Request:
    served = models.get(KINDS, ROUTE, payload.model_name())
    fields = payload.fields
    if "inputs" in fields and "input" in fields:
        raise Unprocessable("send the texts in 'inputs' or in 'input' (OpenAI's name), not both")
    texts = texts_field(fields, limits, key="input" if "input" in fields else "inputs")
    encoding = str_field(fields, "encoding_format", "float")
    if encoding not in ENCODINGS:
        raise Unprocessable(f"'encoding_format' must be 'float' or 'base64', got {encoding!r}")
    return Request(served, texts, encoding, int_field(fields, "dimensions", None, 1, 1_000_000))


def base64_vector(values: np.ndarray) -> str:
    """A vector as OpenAI's ``encoding_format="base64"``: little-endian float32 bytes, base64."""
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")


def embed(
    model: TextModel, texts: list[str], deadline: Deadline | None = None, encoding: str = "float"
) -> dict[str, Any]:
    encoded = model.tokenizer.encode(texts)
    vectors = model.forward(encoded.encodings, deadline)
    assert len(vectors) == len(texts)
    rounded = [v.numpy().round(6) for v in vectors]  # both encodings carry the same float32 values
    tokens = sum(encoded.lengths)
    return {
        "object": "list",
        "model": model.name,
        "dim": int(vectors[0].shape[-1]),
        "data": [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64_vector(v) if encoding == "base64" else v.tolist(),
                "tokens": n,
                "truncated": t,
            }
            for i, (v, n, t) in enumerate(zip(rounded, encoded.lengths, encoded.truncated, strict=True))
        ],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def run(models: Models, request: Request, deadline: Deadline) -> dict[str, Any]:
    body = models.call(request.model, deadline, lambda m: embed(m, request.texts, deadline, request.encoding))
    if request.dimensions not in (None, body["dim"]):
        raise Unprocessable(
            f"'dimensions' = {request.dimensions} is not supported: {body['model']} returns {body['dim']}-dimensional "
            "vectors and cannot shorten them; leave 'dimensions' out or set it to that size"
        )
    return body


TASK = Task("embeddings", (ROUTE,), KINDS, parse, run, "Sentence embeddings (L2-normalised; OpenAI-compatible).")
