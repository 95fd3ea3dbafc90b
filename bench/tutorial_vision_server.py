"""The reference point for images: EfficientNet-Lite0 served the way a plain Flask tutorial does it.

Eager fp32 model (NCHW, or channels-last with --channels-last), torchvision transforms, one request at a time (Flask's development
server with threaded=False). Same multipart upload and response shape as edge-mm's
/v1/image-classification. Run: python -m bench.tutorial_vision_server --weights <.pth> --port 8091
"""

from __future__ import annotations

import argparse
import io

import torch
from flask import Flask, jsonify, request
from PIL import Image
from torchvision import transforms

from edge_mm.build.efficientnet_lite import load_efficientnet_lite0
from edge_mm.build.imagenet import load_imagenet_labels


def create_app(weights: str, channels_last: bool = False) -> Flask:
    model = load_efficientnet_lite0(weights)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    labels = load_imagenet_labels()
    preprocess = transforms.Compose(
        [
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
        ]
    )
    app = Flask(__name__)

    @app.post("/v1/image-classification")
    def classify():  # type: ignore[no-untyped-def]
        image = Image.open(io.BytesIO(request.files["image"].read())).convert("RGB")
        with torch.no_grad():
            probs = model(preprocess(image).unsqueeze(0).contiguous(memory_format=layout)).softmax(-1)[0]
        scores, idx = probs.topk(5)
        return jsonify(
            {
                "results": [
                    [{"label": labels[i], "score": s} for s, i in zip(scores.tolist(), idx.tolist(), strict=True)]
                ]
            }
        )

    @app.get("/health/ready")
    def ready():  # type: ignore[no-untyped-def]
        return jsonify({"status": "ready"})

    return app


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--weights", required=True)
    p.add_argument("--port", type=int, default=8091)
    p.add_argument("--channels-last", action="store_true", help="the one-line layout fix, still eager")
    a = p.parse_args()
    create_app(a.weights, a.channels_last).run(host="127.0.0.1", port=a.port, threaded=False)
