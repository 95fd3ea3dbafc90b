"""ONNX Runtime int8 MiniLM behind Flask + waitress (4 threads): what a user would write instead of
edge-mm, with ONNX Runtime's default session options. Run in .venv-onnx:
    python bench/peers/onnx_server.py --model minilm-int8.onnx --tokenizer tokenizer.json --port 8092"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
from flask import Flask, jsonify, request
from tokenizers import Tokenizer
from waitress import serve


def create_app(model: str, tokenizer: str) -> Flask:
    tok = Tokenizer.from_file(tokenizer)
    tok.no_padding()
    tok.enable_truncation(256)
    opts = ort.SessionOptions()
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    app = Flask(__name__)

    @app.post("/v1/embeddings")
    def embeddings():  # type: ignore[no-untyped-def]
        texts = request.get_json()["inputs"]
        texts = [texts] if isinstance(texts, str) else texts
        encs = tok.encode_batch(texts)
        width = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), width), dtype=np.int64)
        mask = np.zeros((len(encs), width), dtype=np.int64)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        (vectors,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
        return jsonify({"data": [{"embedding": v} for v in vectors.tolist()]})

    @app.get("/health/ready")
    def ready():  # type: ignore[no-untyped-def]
        return jsonify({"status": "ready"})

    return app


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--port", type=int, default=8092)
    p.add_argument("--threads", type=int, default=4, help="waitress worker threads")
    a = p.parse_args()
    serve(create_app(a.model, a.tokenizer), host="127.0.0.1", port=a.port, threads=a.threads)
