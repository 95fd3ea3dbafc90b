"""ONNX Runtime EfficientNet-Lite0 fp32 behind Flask + waitress (4 threads): what a user would write
instead of edge-mm for image classification, with ONNX Runtime's default session options and the
same preprocessing as edge-mm's manifest (shorter side to 256 bicubic, centre crop 224, mean/std
0.5). Same multipart upload (field ``image``) and top-5 answer shape. Run in .venv-onnx:
    python bench/peers/onnx_vision_server.py --model efficientnet-lite0.onnx --port 8094
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from flask import Flask, jsonify, request
from PIL import Image
from waitress import serve


def preprocess(image: Image.Image) -> np.ndarray:
    """(1, 3, 224, 224) float32."""
    w, h = image.size
    scale = 256 / min(w, h)
    image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
    w, h = image.size
    left, top = (w - 224) // 2, (h - 224) // 2
    pixels = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255.0
    return ((pixels - 0.5) / 0.5).transpose(2, 0, 1)[None].copy()


def create_app(model: str) -> Flask:
    labels = json.loads(Path(model).with_suffix(".labels.json").read_text())
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    app = Flask(__name__)

    @app.post("/v1/image-classification")
    def classify():  # type: ignore[no-untyped-def]
        image = Image.open(io.BytesIO(request.files["image"].read())).convert("RGB")
        (logits,) = session.run(None, {"pixels": preprocess(image)})
        z = np.exp(logits[0] - logits[0].max())
        probs = z / z.sum()
        top = np.argsort(-probs)[:5]
        return jsonify({"results": [[{"label": labels[i], "score": float(probs[i])} for i in top]]})

    @app.get("/health/ready")
    def ready():  # type: ignore[no-untyped-def]
        return jsonify({"status": "ready"})

    return app


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--port", type=int, default=8094)
    p.add_argument("--threads", type=int, default=4)
    a = p.parse_args()
    serve(create_app(a.model), host="127.0.0.1", port=a.port, threads=a.threads)
