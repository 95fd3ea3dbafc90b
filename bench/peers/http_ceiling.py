"""The HTTP ceiling: Flask + waitress (4 threads) answering without a model.

POST /v1/embeddings parses the JSON body and returns one constant 384-float vector per text;
POST /v1/image-classification reads the uploaded image's bytes and returns a constant top-5.
What no Flask + waitress server can beat on this machine, whatever its model costs.
    python -m bench.peers.http_ceiling --port 8093 [--threads 4]
"""

from __future__ import annotations

import argparse
import math

from flask import Flask, jsonify, request
from waitress import serve

DIM = 384


def create_app() -> Flask:
    vector = [round(math.sin(i * 0.37) / 10, 6) for i in range(DIM)]
    top5 = [{"label": f"class {i}", "score": round(0.5 / (i + 1), 6)} for i in range(5)]
    app = Flask(__name__)

    @app.post("/v1/embeddings")
    def embeddings():  # type: ignore[no-untyped-def]
        texts = request.get_json()["inputs"]
        texts = [texts] if isinstance(texts, str) else texts
        return jsonify({"data": [{"embedding": vector} for _ in texts]})

    @app.post("/v1/image-classification")
    def classify():  # type: ignore[no-untyped-def]
        image = request.files["image"].read()
        return jsonify({"results": [top5], "bytes": len(image)})

    @app.get("/health/ready")
    def ready():  # type: ignore[no-untyped-def]
        return jsonify({"status": "ready"})

    return app


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8093)
    p.add_argument("--threads", type=int, default=4)
    a = p.parse_args()
    serve(create_app(), host="127.0.0.1", port=a.port, threads=a.threads)
