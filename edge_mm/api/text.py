"""Text routes: embeddings, zero-shot classification, text classification, NER."""

from __future__ import annotations

from flask import Blueprint, jsonify

from edge_mm.api.inference import json_body, limits, model_name, registry, run
from edge_mm.tasks import embeddings, text_classification, token_classification, zero_shot_text

bp = Blueprint("text", __name__, url_prefix="/v1")


@bp.post("/embeddings")
def embed():  # type: ignore[no-untyped-def]
    payload = json_body()
    served = registry().get(model_name(payload), "embeddings")
    texts = embeddings.parse(payload, limits())
    return jsonify(run(served, lambda: embeddings.run(served.runner, texts)))


@bp.post("/zero-shot-classification")
def zero_shot():  # type: ignore[no-untyped-def]
    payload = json_body()
    served = registry().get(model_name(payload), "zero-shot-classification")
    default_template = str(served.runner.entry.options.get("hypothesis_template", "{}"))
    req = zero_shot_text.parse(payload, limits(), default_template)
    return jsonify(run(served, lambda: zero_shot_text.run(served.runner, req)))


@bp.post("/text-classification")
def classify():  # type: ignore[no-untyped-def]
    payload = json_body()
    served = registry().get(model_name(payload), "text-classification")
    req = text_classification.parse(payload, limits(), len(served.runner.labels))
    return jsonify(run(served, lambda: text_classification.run(served.runner, req)))


@bp.post("/token-classification")
def ner():  # type: ignore[no-untyped-def]
    payload = json_body()
    served = registry().get(model_name(payload), "token-classification")
    texts = token_classification.parse(payload, limits())
    return jsonify(run(served, lambda: token_classification.run(served.runner, texts)))
