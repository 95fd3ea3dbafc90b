"""The reference point: MiniLM served the way a plain Flask tutorial does it.

Eager fp32 transformers, one request at a time (Flask's development server with
threaded=False). Same request and response shape as edge-mm's /v1/embeddings.
Run: python -m bench.tutorial_server --model <folder> --port 8090
"""

from __future__ import annotations

import argparse

import torch
from flask import Flask, jsonify, request
from transformers import AutoModel, AutoTokenizer


def create_app(model_dir: str) -> Flask:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    app = Flask(__name__)

    @app.post("/v1/embeddings")
    def embeddings():  # type: ignore[no-untyped-def]
        texts = request.get_json()["inputs"]
        texts = [texts] if isinstance(texts, str) else texts
        batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
        return jsonify({"data": [{"embedding": v} for v in pooled.tolist()]})

    @app.get("/health/ready")
    def ready():  # type: ignore[no-untyped-def]
        return jsonify({"status": "ready"})

    return app


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--port", type=int, default=8090)
    a = p.parse_args()
    create_app(a.model).run(host="127.0.0.1", port=a.port, threaded=False)
