"""Sentence embeddings: texts -> L2-normalised vectors (pooling as the checkpoint specifies).

The body also speaks OpenAI's embeddings API: ``input`` is accepted for ``inputs``,
``encoding_format`` may be ``"base64"`` (little-endian float32, as OpenAI sends it),
``dimensions`` must equal the model's size, ``user`` is ignored; the answer carries
OpenAI's ``object``, ``data[].object`` and ``usage`` beside edge-mm's own fields.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge_mm.errors import Unprocessable
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.model_calls import Models
from edge_mm.runtime.registry import Served
from edge_mm.runtime.text_model import TextModel
from edge_mm.tasks.payload import Limits, Payload
from edge_mm.tasks.schemas import Options, Texts, check_texts, nullable_options, validate
from edge_mm.tasks.task import Task

ROUTE = "/v1/embeddings"
KINDS = ("embeddings",)


def _one_of_inputs(schema: dict[str, Any]) -> None:
    nullable_options(schema)
    schema["anyOf"] = [{"required": ["inputs"]}, {"required": ["input"]}]


class Body(Options):
    """The texts in ``inputs`` (edge-mm) or ``input`` (OpenAI), not both."""

    model_config = ConfigDict(json_schema_extra=_one_of_inputs)

    inputs: Texts | None = None
    input: Texts | None = Field(None, description="OpenAI's name for 'inputs'")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: little-endian float32 bytes, as OpenAI sends them"
    )
    dimensions: int | None = Field(None, ge=1, le=1_000_000, description="must equal the model's size if sent")
    user: str | None = Field(None, description="OpenAI's end-user id; ignored")


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 with encoding_format=base64")
    tokens: int
    truncated: bool


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class Answer(BaseModel):
    object: Literal["list"]
    model: str
    dim: int
    data: list[Embedding]
    usage: Usage


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
    body = validate(Body, fields)
    key = "input" if "input" in fields else "inputs"
    texts = body.input if key == "input" else body.inputs
    if texts is None:
        raise Unprocessable(f"'{key}' is required: a string or a list of strings")
    check_texts(texts, key, limits.max_items, limits.max_text_chars)
    return Request(served, texts, body.encoding_format, body.dimensions)


def base64_vector(values: np.ndarray) -> str:
    """A vector as OpenAI's ``encoding_format="base64"``: little-endian float32 bytes, base64."""
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")


def embed(
    model: TextModel, texts: list[str], deadline: Deadline | None = None, encoding: str = "float"
) -> dict[str, Any]:
    encoded = model.tokenizer.encode(texts)
    vectors = model.forward(encoded.encodings, deadline)
    assert len(vectors) == len(texts)
    # rounded in float64: 6 decimals print short (float32 rounding printed 17 digits); base64 sends them as float32
    rounded = [np.asarray(v).astype(np.float64).round(6) for v in vectors]  # tensors, or numpy from ORT
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


TASK = Task(
    "embeddings",
    (ROUTE,),
    KINDS,
    parse,
    run,
    "Sentence embeddings (L2-normalised; OpenAI-compatible).",
    body=Body,
    answer=Answer,
)
