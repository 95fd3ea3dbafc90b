"""Do artifacts written by one torch load and match under another (e.g. 2.14.1 -> 2.13.0)?

Two steps, each in its own environment:

    .venv/bin/python scripts/torch_compat_check.py reference   # build venv: fp32 eager outputs
    .venv-cpu/bin/python scripts/torch_compat_check.py compare # other torch: the artifacts' outputs

``reference`` writes build/work/torch-compat/<model>.pt (fp32 eager outputs of the build's sample
sentences, for each text model in settings.toml); ``compare`` runs the built CPU artifact on the
same sentences with the runtime code and prints its fidelity against fp32 next to the figures the
build recorded (same targets: min_mean_cosine / min_min_cosine for embeddings). Exit 1 on a miss.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_mm.config import load_settings  # noqa: E402
from edge_mm.manifest import read_manifest  # noqa: E402

OUT = ROOT / "build" / "work" / "torch-compat"
TEXT_TASKS = ("embeddings", "text-classification", "token-classification")


def reference(settings) -> int:
    from edge_mm.build.sources import resolve_source
    from edge_mm.build.text_checkpoint import load_text_checkpoint, sample_sentences

    OUT.mkdir(parents=True, exist_ok=True)
    sentences = sample_sentences()[:64]
    for spec in settings.models:
        if spec.task not in TEXT_TASKS:
            continue
        source = resolve_source(
            spec.source, packages_dir=settings.path("build.packages_dir"), base_dir=settings.base_dir
        )
        model, _, _ = load_text_checkpoint(spec, source)
        root = settings.path("runtime.artifacts_dir")
        from edge_mm.runtime.text_tokenizer import TextTokenizer

        entry = read_manifest(root).models[spec.name]
        tok = TextTokenizer(
            entry.files["tokenizer"].resolve(root),
            max_length=spec.max_length,
            pad_id=entry.preprocessing.get("pad_id", 0),
        )
        outs = []
        with torch.inference_mode():
            for s in sentences:
                enc = tok.encode([s])
                outs.append(model(enc.input_ids, enc.attention_mask)[0])
        torch.save({"texts": sentences, "outputs": outs, "torch": torch.__version__}, OUT / f"{spec.name}.pt")
        print(f"{spec.name}: fp32 reference of {len(sentences)} sentences under torch {torch.__version__}")
    return 0


def compare(settings) -> int:
    from edge_mm.runtime.artifacts import configure_jit, load_module
    from edge_mm.runtime.text_tokenizer import TextTokenizer

    configure_jit()
    root = settings.path("runtime.artifacts_dir")
    manifest = read_manifest(root)
    misses = 0
    for spec in settings.models:
        ref_file = OUT / f"{spec.name}.pt"
        if spec.task not in TEXT_TASKS or not ref_file.is_file():
            continue
        ref = torch.load(ref_file, weights_only=False)
        entry = manifest.models[spec.name]
        tok = TextTokenizer(
            entry.files["tokenizer"].resolve(root),
            max_length=spec.max_length,
            pad_id=entry.preprocessing.get("pad_id", 0),
        )
        module = load_module(entry.variants["cpu"].files["model"].resolve(root), "cpu")
        cos = []
        texts = ref["texts"]
        with torch.inference_mode():
            for i in range(0, len(texts), 8):  # padded batches of 8, as the server runs them
                enc = tok.encode(texts[i : i + 8])
                out = module(enc.input_ids, enc.attention_mask)
                for j, want in enumerate(ref["outputs"][i : i + 8]):
                    got = out[j][: want.shape[0]] if out.dim() == 3 else out[j]
                    cos.append(float(torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0)))
        mean, worst = sum(cos) / len(cos), min(cos)
        ok = spec.task != "embeddings" or (mean >= spec.min_mean_cosine and worst >= spec.min_min_cosine)
        misses += not ok
        recorded = entry.verification.get("int8_vs_fp32", {})
        print(
            f"{spec.name}: artifact written by torch {manifest.torch_version}, run under torch {torch.__version__}: "
            f"cosine vs fp32 mean {mean:.5f} min {worst:.5f} (build recorded mean {recorded.get('mean_cosine')} "
            f"min {recorded.get('min_cosine')}; targets {spec.min_mean_cosine}/{spec.min_min_cosine}) -> {'ok' if ok else 'MISS'}"
        )
    return 1 if misses else 0


if __name__ == "__main__":
    step = sys.argv[1] if len(sys.argv) > 1 else "compare"
    settings = load_settings(ROOT / "settings.toml")
    sys.exit(reference(settings) if step == "reference" else compare(settings))
