"""MTCNN latency per 640x480 frame: eager vs TorchScript nets, side by side in one run.

    python -m bench.mtcnn_frame_time [--threads 2] [--repeats 20]   # from the repo root

Frames: scikit-image's astronaut.png resized to 640x480 (one face) and coffee.png
resized to 640x480 (no face). Variants: eager modules; all three nets traced;
PNet scripted + R/O-Net traced (``export_mtcnn_nets``, what the build ships);
the same traced nets after ``torch.jit.freeze``. Calls are interleaved round-robin
so drift from other load on the machine hits every variant alike. The table shows
median and p90 ms per frame and the number of faces found.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edge_mm.build.mtcnn_nets import export_mtcnn_nets, load_mtcnn_nets
from edge_mm.runtime.mtcnn import detect_faces

WEIGHTS = Path(__file__).resolve().parents[1] / "build/models/facenet_pytorch/data"
Nets = tuple[Callable[..., object], Callable[..., object], Callable[..., object]]


def frame(name: str) -> np.ndarray:
    """A scikit-image photo as a (480, 640, 3) uint8 RGB frame."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-image is not installed: its wheel carries the test photos")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((640, 480), Image.Resampling.BILINEAR))


def build_variants() -> dict[str, Nets]:
    pnet, rnet, onet = load_mtcnn_nets(WEIGHTS)
    with torch.no_grad():
        traced = (
            torch.jit.trace(pnet, torch.zeros(1, 3, 288, 384)),
            torch.jit.trace(rnet, torch.zeros(2, 3, 24, 24)),
            torch.jit.trace(onet, torch.zeros(2, 3, 48, 48)),
        )
        frozen = tuple(torch.jit.freeze(m.eval()) for m in traced)
    return {
        "eager": (pnet, rnet, onet),
        "trace (all three)": traced,
        "script P + trace R/O": export_mtcnn_nets(pnet, rnet, onet),
        "trace + freeze": frozen,  # type: ignore[dict-item]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation notices
    torch.set_num_threads(args.threads)

    frames = {
        "astronaut (1 face)": frame("astronaut.png"),
        "coffee (no face)": frame("coffee.png"),
    }
    variants = build_variants()
    times: dict[tuple[str, str], list[float]] = {(f, v): [] for f in frames for v in variants}
    found: dict[tuple[str, str], int] = {}
    for i in range(args.warmup + args.repeats):
        for fname, image in frames.items():
            for vname, nets in variants.items():
                start = time.perf_counter()
                faces = detect_faces(image, *nets)
                elapsed = (time.perf_counter() - start) * 1000
                found[fname, vname] = len(faces)
                if i >= args.warmup:
                    times[fname, vname].append(elapsed)

    print(
        f"MTCNN per 640x480 frame, torch {torch.__version__}, "
        f"{args.threads} thread(s), {args.repeats} runs (median / p90 ms)"
    )
    print(f"{'frame':<20} {'variant':<22} {'median':>8} {'p90':>8} {'faces':>6}")
    for (fname, vname), samples in times.items():
        p90 = statistics.quantiles(samples, n=10)[-1] if len(samples) > 1 else samples[0]
        print(f"{fname:<20} {vname:<22} {statistics.median(samples):8.1f} {p90:8.1f} {found[fname, vname]:>6}")


if __name__ == "__main__":
    main()
