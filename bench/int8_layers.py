"""What each fp32-kept Linear layer costs in speed, and what it buys in fidelity (MiniLM).

Builds traced+frozen variants side by side in one run: all fp32, all int8, the guard's
choice (from the manifest), and the guard's choice with each kept layer quantized in
turn. Times a batch of 8 x 32-token sentences and a single one, interleaving variants
round by round so machine noise hits them alike.
    python -m bench.int8_layers [--rounds 30]
Writes bench/results/int8_layers.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from bench.compare import MINILM, sentences_of_32_tokens
from bench.servers import ROOT
from edge_mm.build import artifact_backend
from edge_mm.build.quantize import quantize_linear_layers
from edge_mm.build.smoothing import smooth_linear_inputs
from edge_mm.build.text import SentenceEmbedding, sample_sentences
from edge_mm.manifest import read_manifest
from edge_mm.runtime.text_tokenizer import TextTokenizer


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--artifacts", type=Path, default=ROOT / "build" / "artifacts")
    a = p.parse_args()
    from transformers import AutoModel

    torch.set_num_threads(2)
    kept = read_manifest(a.artifacts).models["minilm"].verification.get("kept_fp32", [])
    model = SentenceEmbedding(AutoModel.from_pretrained(MINILM, attn_implementation="eager"), "mean").eval()
    tok = TextTokenizer(MINILM / "tokenizer.json", max_length=256, pad_id=0)
    texts = sentences_of_32_tokens(8)
    b8 = tok.encode(texts)
    b1 = tok.encode(texts[:1])
    # fidelity over all 385 sentences in batches of 32, as the build measures it (dynamic int8
    # picks one activation scale per batch, so batch composition matters)
    sentences = sample_sentences()
    fid = [tok.encode(sentences[i : i + 32]) for i in range(0, len(sentences), 32)]
    example = (b8.input_ids, b8.attention_mask)
    chunks = [tok.encode(sentences[i : i + 32]) for i in range(0, len(sentences), 32)]
    calibration = [(e.input_ids, e.attention_mask) for e in chunks][-4:]  # as the build does
    smoothed = smooth_linear_inputs(model, calibration, alpha=0.8)

    def traced(m: torch.nn.Module, keep: list[str]) -> torch.jit.ScriptModule:
        return artifact_backend.trace_and_freeze(quantize_linear_layers(m, keep)[0], example)

    variants = {"fp32": artifact_backend.trace_and_freeze(model, example)}
    variants["int8, all layers"] = traced(model, [])
    variants["int8, all layers, smoothed"] = traced(smoothed, [])
    variants[f"int8, smoothed, {len(kept)} kept fp32 (shipped)"] = traced(smoothed, kept)
    for layer in kept:
        variants[f"shipped, but {layer} int8"] = traced(smoothed, [k for k in kept if k != layer])
    with torch.inference_mode():

        def run_all(m: torch.jit.ScriptModule) -> torch.Tensor:
            return torch.cat([m(e.input_ids, e.attention_mask) for e in fid])

        ref = run_all(variants["fp32"])
        cos = {k: torch.nn.functional.cosine_similarity(ref, run_all(v)) for k, v in variants.items()}
        times: dict[str, dict[str, list[float]]] = {k: {"b1": [], "b8": []} for k in variants}
        for r in range(a.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for k in order:
                for name, batch in (("b1", b1), ("b8", b8)):
                    t0 = time.perf_counter()
                    variants[k](batch.input_ids, batch.attention_mask)
                    times[k][name].append((time.perf_counter() - t0) * 1000)
    rows = ["| variant | batch 1 ms | batch 8 ms | mean cos | min cos |", "|---|---|---|---|---|"]
    for k in variants:
        m1, m8 = statistics.median(times[k]["b1"][3:]), statistics.median(times[k]["b8"][3:])
        rows.append(f"| {k} | {m1:.2f} | {m8:.2f} | {float(cos[k].mean()):.4f} | {float(cos[k].min()):.4f} |")
    table = "\n".join(rows) + "\n"
    print(table)
    (ROOT / "bench" / "results" / "int8_layers.md").write_text("Command: `python -m bench.int8_layers`\n\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
