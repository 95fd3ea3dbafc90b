"""The forward-only ceiling: ms per forward pass of one MiniLM batch, in process, no HTTP.

    python -m bench.peers.forward_time served --config settings.toml --texts texts.json
    .venv-onnx/bin/python bench/peers/forward_time.py onnxruntime --model minilm-int8.onnx \
        --tokenizer tokenizer.json --texts texts.json

``served`` loads the edge-mm artifact the server would serve (TorchScript or ONNX Runtime, the
build's choice) through the runtime's own loader (main venv) and times ``forward_now`` (padding,
forward, split); on more than one thread an ONNX Runtime model runs its solo session (spinning), as a
lone pass does in the server; ``onnxruntime`` times padding and
``session.run`` (.venv-onnx). Tokenizing is outside the timed part for both. For each thread
count and batch size: 3 untimed passes, then passes until ``--seconds`` (at least 10).
Prints one JSON object: {"backend" (what ran), "rows": [{"batch", "threads", "median_ms", "best_ms", "runs"}]}.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(run: Callable[[], Any], seconds: float) -> tuple[float, float, int]:
    for _ in range(3):
        run()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < 10 or time.perf_counter() < end:
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), min(times), len(times)


def served(config: str, texts: list[str]) -> tuple[Callable[[int], None], Callable[[int], Callable[[], Any]]]:
    """The embeddings model as edge-mm serves it on CPU (the build's backend choice), reloaded per
    thread count (ONNX Runtime sessions take their thread count when they load)."""
    import torch

    from edge_mm import device as device_policy
    from edge_mm.config import load_settings
    from edge_mm.manifest import read_manifest
    from edge_mm.runtime import artifacts
    from edge_mm.tasks.table import LOADERS

    settings = load_settings(config)
    root = settings.path("runtime.artifacts_dir")
    spec = next(m for m in settings.models if m.task == "embeddings")
    entry = read_manifest(root).models[spec.name]
    variant = device_policy.resolve("cpu", False, set(entry.variants)).variant
    if hasattr(artifacts, "serving_variant"):  # revisions with more than one CPU backend
        variant, _ = artifacts.serving_variant(entry, variant, getattr(spec, "artifact_backend", "auto"))
    BACKEND[0] = getattr(entry.variants[variant], "backend", "torchscript")
    models: dict[int, Any] = {}
    current = [1]

    def set_threads(n: int) -> None:
        torch.set_num_threads(n)
        if not hasattr(artifacts, "set_cpu_threads"):
            return
        if n > 1 and BACKEND[0] == "onnxruntime" and "solo" in inspect.signature(artifacts.set_cpu_threads).parameters:
            # a pass that runs alone takes the solo session on every core, its pool spinning (runtime/solo.py):
            # what the server does; a one-thread session told to use n threads would not spin
            artifacts.set_cpu_threads(1, solo=n)
        else:
            artifacts.set_cpu_threads(n)
        if n not in models:
            models[n] = LOADERS["embeddings"](spec.name, entry, root, "cpu", variant, 64)
        current[0] = n

    def make(batch: int) -> Callable[[], Any]:
        model = models[current[0]]
        encodings = model.tokenizer.encode(texts[:batch]).encodings
        return lambda: model.forward_now(encodings)

    return set_threads, make


BACKEND = ["onnxruntime"]  # what served() found the model served with


def onnxruntime(
    model_path: str, tokenizer: str, texts: list[str]
) -> tuple[Callable[[int], None], Callable[[int], Callable[[], Any]]]:
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer)
    tok.no_padding()
    tok.enable_truncation(256)
    sessions: dict[int, Any] = {}
    current = [1]

    def set_threads(n: int) -> None:
        if n not in sessions:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = n
            opts.inter_op_num_threads = 1
            sessions[n] = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
        current[0] = n

    def make(batch: int) -> Callable[[], Any]:
        encs = tok.encode_batch(texts[:batch])
        session = sessions[current[0]]

        def run() -> Any:
            width = max(len(e.ids) for e in encs)
            ids = np.zeros((len(encs), width), dtype=np.int64)
            mask = np.zeros((len(encs), width), dtype=np.int64)
            for i, e in enumerate(encs):
                ids[i, : len(e.ids)] = e.ids
                mask[i, : len(e.ids)] = 1
            return session.run(None, {"input_ids": ids, "attention_mask": mask})

        return run

    return set_threads, make


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("backend", choices=["served", "onnxruntime"], help="served: edge-mm's own artifact")
    p.add_argument("--texts", required=True, help="JSON list of texts (batch b takes the first b)")
    p.add_argument("--config", help="edge-mm settings (torchscript)")
    p.add_argument("--model", help=".onnx file (onnxruntime)")
    p.add_argument("--tokenizer", help="tokenizer.json (onnxruntime)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seconds", type=float, default=1.5, help="timed passes per (threads, batch)")
    a = p.parse_args()
    with open(a.texts) as f:
        texts = json.load(f)
    if a.backend == "served":
        set_threads, make = served(a.config, texts)
    else:
        set_threads, make = onnxruntime(a.model, a.tokenizer, texts)
    rows = []
    for n in a.threads:
        set_threads(n)
        for b in a.batches:
            median, best, runs = timed(make(b), a.seconds)
            rows.append(
                {"batch": b, "threads": n, "median_ms": round(median, 2), "best_ms": round(best, 2), "runs": runs}
            )
    print(json.dumps({"backend": BACKEND[0], "rows": rows}))


if __name__ == "__main__":
    main()
