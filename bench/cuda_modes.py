"""TorchScript CUDA variants: milliseconds per call under TorchScript's executor settings, and through
the runner the server uses. For a GPU machine (scripts/gpu_check.sh builds the artifacts).

    python bench/cuda_modes.py ARTIFACTS_DIR

The image classifier's fp16 channels-last variant took 2.2 s a request on an H100 (gpu_check,
2026-12-06) while its CPU peer took 15 ms. Each mode loads the module afresh, calls it once (the
first call, which profiles), then times 6 more calls after a CUDA sync. Modes that change global
executor flags run last.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge_mm.manifest import read_manifest  # noqa: E402
from edge_mm.runtime.artifacts import load_module  # noqa: E402
from edge_mm.runtime.image_classifier import ImageClassifier  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def timed(call: Callable[[], Any], n: int = 6) -> tuple[float, float]:
    """(first call ms, median of the next ``n``)."""
    times = []
    for _ in range(n + 1):
        t = time.perf_counter()
        call()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1000)
    return times[0], statistics.median(times[1:])


def report(name: str, first_median: tuple[float, float]) -> None:
    print(f"{name:58s} first {first_median[0]:9.1f} ms   then median {first_median[1]:8.2f} ms", flush=True)


def attempt(step: Callable[[], None]) -> None:
    """One step; a failure is printed and the next step still runs (GPU time is scarce)."""
    try:
        step()
    except Exception as e:  # noqa: BLE001
        print(f"  failed: {type(e).__name__}: {e}", flush=True)


def modes(path: Path, x: torch.Tensor) -> None:
    def fresh() -> Any:
        return load_module(path, "cuda")

    m = fresh()

    def under_inference_mode() -> None:
        with torch.inference_mode():
            m(x)

    report("inference_mode (the runner's)", timed(under_inference_mode))
    m = fresh()

    def under_no_grad() -> None:
        with torch.no_grad():
            m(x)

    report("no_grad", timed(under_no_grad))
    m = fresh()

    def unoptimized() -> None:
        with torch.inference_mode(), torch.jit.optimized_execution(False):
            m(x)

    report("inference_mode + optimized_execution(False)", timed(unoptimized))
    m = fresh()
    out: list[float] = []
    thread = threading.Thread(target=lambda: out.extend(timed(under_inference_mode)))
    thread.start()
    thread.join()
    report("inference_mode, in another thread", (out[0], out[1]))
    torch.backends.cudnn.benchmark = True
    m = fresh()
    report("inference_mode + cudnn.benchmark", timed(under_inference_mode))
    torch.backends.cudnn.benchmark = False
    torch._C._jit_set_texpr_fuser_enabled(False)
    m = fresh()
    report("inference_mode, tensorexpr fuser off", timed(under_inference_mode))
    torch._C._jit_set_texpr_fuser_enabled(True)
    torch._C._jit_set_profiling_executor(False)
    m = fresh()
    report("inference_mode, profiling executor off", timed(under_inference_mode))
    torch._C._jit_set_profiling_executor(True)


def runner(art: Path, name: str) -> None:
    manifest = read_manifest(art)
    entry = manifest.models[name]
    clf = ImageClassifier.load(name, entry, art, "cuda", "cuda", 8)
    image = Image.open(ROOT / "edge_mm/build/data/sample_coffee.jpg").convert("RGB")
    report("runner: prepare (preprocess on CPU)", timed(lambda: clf.prepare([image])))
    items = clf.prepare([image])
    report("runner: forward_now (batch 1)", timed(lambda: clf.forward_now(items)))


def main(art: Path) -> None:
    print(torch.__version__, torch.cuda.get_device_name(0), flush=True)
    entry = read_manifest(art).models["efficientnet"]
    path = entry.variants["cuda"].files["model"].resolve(art)
    x = torch.randn(1, 3, 224, 224, device="cuda").half().contiguous(memory_format=torch.channels_last)
    print(f"efficientnet cuda.pt, input {tuple(x.shape)} fp16 channels-last", flush=True)
    attempt(lambda: runner(art, "efficientnet"))
    attempt(lambda: modes(path, x))
    x = torch.randn(1, 3, 224, 224, device="cuda").half()
    m = load_module(path, "cuda")

    def contiguous_nchw() -> None:
        with torch.inference_mode():
            m(x)

    attempt(lambda: report("inference_mode, NCHW input (not channels-last)", timed(contiguous_nchw)))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
