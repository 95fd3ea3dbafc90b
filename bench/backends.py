"""TorchScript against ONNX Runtime, in process, on the built artifacts: the figures `auto` chooses by.

    python -m bench.backends [--config settings.toml] [--threads 1 2] [--out bench/results/backends.md]

Needs artifacts built with both CPU variants (`edge-mm build` with artifact_backend = auto,
the default). For the MiniLM embeddings model and the EfficientNet-Lite0 classifier it
times one forward pass at batch 1 and batch 8 with 1 and 2 intra-op threads: MiniLM on
a 21-32-token sentence from the build's sample sentences (TorchScript int8 against ONNX
Runtime int8), EfficientNet on 224x224 images (both fp32; TorchScript channels-last as it
serves). The backends alternate call by call, so other load on the machine hits both alike;
each figure is the median (p90 beside it). Fidelity (int8 against fp32 on the build's
sample sentences) and the choice `auto` made come from the manifest the build wrote.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import onnxruntime
import torch
from PIL import Image

from bench.machine import machine_line
from edge_mm.build.manifest_entry import sample_images
from edge_mm.build.text import latency_inputs, sample_sentences
from edge_mm.config import load_settings
from edge_mm.manifest import ORT_VARIANT, ModelEntry, read_manifest
from edge_mm.media.image_preprocess import preprocess_from_dict
from edge_mm.runtime.artifacts import load_artifact, set_cpu_threads
from edge_mm.runtime.text_tokenizer import TextTokenizer

ROOT = Path(__file__).resolve().parents[1]
CL = torch.channels_last


def timed(runs: dict[str, Callable[[], Any]], rounds: int, warm: int = 3) -> dict[str, list[float]]:
    """ms per call of each run, interleaved (the order alternates each round)."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    with torch.inference_mode():
        for i in range(warm + rounds):
            for name in names if i % 2 else reversed(names):
                t0 = time.perf_counter()
                runs[name]()
                if i >= warm:
                    times[name].append((time.perf_counter() - t0) * 1000)
    return times


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=10)[int(q * 10) - 1] if len(values) > 2 else max(values)


def load_both(entry: ModelEntry, root: Path, threads: int) -> dict[str, Any]:
    if ORT_VARIANT not in entry.variants:
        raise SystemExit("no ONNX Runtime variant in the manifest: build with artifact_backend = auto")
    set_cpu_threads(threads)
    return {
        "torchscript": load_artifact(entry.variants["cpu"], root, "cpu"),
        "onnxruntime": load_artifact(entry.variants[ORT_VARIANT], root, "cpu"),
    }


def text_inputs(entry: ModelEntry, root: Path) -> dict[str, tuple[torch.Tensor, ...]]:
    pre = entry.preprocessing
    tok = TextTokenizer(entry.files["tokenizer"].resolve(root), max_length=pre["max_length"], pad_id=pre["pad_id"])
    return latency_inputs(tok, sample_sentences())


def image_inputs(entry: ModelEntry) -> dict[str, torch.Tensor]:
    pre = preprocess_from_dict(entry.preprocessing)
    photos: list[Image.Image] = sample_images()
    x = pre(photos)  # (4, 3, 224, 224)
    return {"batch_1": x[:1], "batch_8": torch.cat([x, x])}


def measure(entry: ModelEntry, root: Path, kind: str, threads: list[int], rounds: dict[str, int]) -> list[dict]:
    rows = []
    for n in threads:
        models = load_both(entry, root, n)
        if kind == "text":
            inputs: dict[str, Any] = text_inputs(entry, root)
            calls = {key: {b: partial(m, *x) for b, m in models.items()} for key, x in inputs.items()}
            tokens = inputs["batch_1"][0].shape[1]
        else:
            images = image_inputs(entry)
            calls = {
                key: {
                    "torchscript": partial(models["torchscript"], x.contiguous(memory_format=CL)),
                    "onnxruntime": partial(models["onnxruntime"], x.contiguous()),
                }
                for key, x in images.items()
            }
            tokens = None
        for key, runs in calls.items():
            times = timed(runs, rounds[key])
            for backend, values in times.items():
                rows.append(
                    {
                        "threads": n,
                        "batch": int(key.split("_")[1]),
                        "backend": backend,
                        "median_ms": statistics.median(values),
                        "p90_ms": p(values, 0.9),
                        "tokens": tokens,
                    }
                )
    return rows


def table(rows: list[dict]) -> list[str]:
    out = ["| threads | batch | TorchScript ms (p90) | ONNX Runtime ms (p90) | ORT / TS |", "|---|---|---|---|---|"]
    keyed = {(r["threads"], r["batch"], r["backend"]): r for r in rows}
    for threads, batch in sorted({(r["threads"], r["batch"]) for r in rows}, key=lambda t: (t[1], t[0])):
        ts, ort = keyed[(threads, batch, "torchscript")], keyed[(threads, batch, "onnxruntime")]
        out.append(
            f"| {threads} | {batch} | {ts['median_ms']:.2f} ({ts['p90_ms']:.2f}) "
            f"| {ort['median_ms']:.2f} ({ort['p90_ms']:.2f}) | {ort['median_ms'] / ts['median_ms']:.2f} |"
        )
    return out


def choice(entry: ModelEntry) -> list[str]:
    b = entry.backends
    lines = [f"- serves **{b.get('serves', 'torchscript')}**: {b.get('reason', '(no record)')}"]
    for name, c in b.get("candidates", {}).items():
        lat = ", ".join(f"{k.replace('_', ' ')} {v:.2f} ms" for k, v in c["latency_ms"].items()) or "not timed"
        fid = ", ".join(f"{k} {v}" for k, v in c["fidelity"].items()) or "fp32 (the reference)"
        lines.append(f"- {name} at build time ({b.get('threads')} thread(s)): {lat}; vs fp32: {fid}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "settings.toml"))
    ap.add_argument("--text-model", default="minilm")
    ap.add_argument("--image-model", default="efficientnet")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=40, help="timed calls per backend at batch 1 (batch 8: a quarter)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "backends.md"))
    a = ap.parse_args()
    settings = load_settings(a.config)
    root = settings.path("runtime.artifacts_dir")
    manifest = read_manifest(root)
    rounds = {"batch_1": a.rounds, "batch_8": max(5, a.rounds // 4)}
    lines = [
        "# Artifact backends: TorchScript against ONNX Runtime, in process",
        "",
        f"`python -m bench.backends` ({time.strftime('%Y-%m-%d')}; torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}, {os.cpu_count()} cores, load average "
        f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} at start, "
        f"artifacts in `{root.relative_to(ROOT) if root.is_relative_to(ROOT) else root}`). Median forward time "
        "per call (p90), the backends alternating call by call on the same inputs.",
    ]
    for name, kind, what in (
        (a.text_model, "text", "MiniLM embeddings, int8 (TorchScript) against int8 (ONNX Runtime)"),
        (a.image_model, "image", "EfficientNet-Lite0 at 224x224, fp32 against fp32"),
    ):
        entry = manifest.models.get(name)
        if entry is None:
            lines += ["", f"## {name}", "", "not in the manifest: build it first"]
            continue
        rows = measure(entry, root, kind, a.threads, rounds)
        tokens = next((r["tokens"] for r in rows if r["tokens"]), None)
        lines += ["", f"## {name}: {what}", ""]
        if tokens:
            lines += [f"One sample sentence of {tokens} tokens (batch 8: eight sentences of 21-32 tokens, padded).", ""]
        lines += table(rows)
        lines += ["", "What the build measured and chose (the manifest's `backends`):", "", *choice(entry)]
    lines += [
        "",
        machine_line(),
        f"Load average at the end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}. On a shared 2-core machine a "
        "2-thread figure measured while other work runs says more about the contention than the backend "
        "(TorchScript's OpenMP threads wait for a second core that is busy); compare the 1-thread rows.",
    ]
    text = "\n".join(lines) + "\n"
    Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
