"""MTCNN latency per 640x480 frame: the TorchScript and ONNX Runtime pipelines, side by side in one run.

    python -m bench.mtcnn_frame_time [--threads 2] [--repeats 20] [--all]   # from the repo root

Frames: scikit-image's astronaut.png resized to 640x480 (one face) and coffee.png
resized to 640x480 (no face). Variants, as the build ships them:
PNet scripted + R/O-Net traced (``export_mtcnn_nets``) through the torch pipeline, and
the three nets exported to ONNX (``export_mtcnn_onnx``) run by ONNX Runtime sessions
through the numpy pipeline (``engine="numpy"``, no torch). ``--all`` adds the torch
alternatives measured before: eager modules, all three nets traced, and traced +
``torch.jit.freeze``. Calls are interleaved round-robin so drift from other load on the
machine hits every variant alike. The table shows median and p90 ms per frame, the
number of faces found, and the largest box difference (px) from the TorchScript pipeline.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edge_mm.build.mtcnn_nets import export_mtcnn_nets, export_mtcnn_onnx, load_mtcnn_nets
from edge_mm.runtime.mtcnn import Engine, Face, detect_faces
from edge_mm.runtime.onnx_session import OnnxSession

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


SHIPPED = "torchscript"


def build_variants(threads: int, onnx_dir: Path, every: bool) -> dict[str, tuple[Nets, Engine]]:
    pnet, rnet, onet = load_mtcnn_nets(WEIGHTS)
    paths = export_mtcnn_onnx(pnet, rnet, onet, onnx_dir)
    shipped: dict[str, tuple[Nets, Engine]] = {
        SHIPPED: (export_mtcnn_nets(pnet, rnet, onet), "torch"),
        "onnxruntime": (tuple(OnnxSession(paths[n], threads) for n in ("pnet", "rnet", "onet")), "numpy"),  # type: ignore[dict-item]
    }
    if not every:
        return shipped
    with torch.no_grad():
        traced = (
            torch.jit.trace(pnet, torch.zeros(1, 3, 288, 384)),
            torch.jit.trace(rnet, torch.zeros(2, 3, 24, 24)),
            torch.jit.trace(onet, torch.zeros(2, 3, 48, 48)),
        )
        frozen = tuple(torch.jit.freeze(m.eval()) for m in traced)
    return {
        **shipped,
        "eager": ((pnet, rnet, onet), "torch"),
        "trace (all three)": (traced, "torch"),
        "trace + freeze": (frozen, "torch"),
    }


def box_gap(faces: list[Face], reference: list[Face]) -> float:
    """Largest box coordinate difference (px) from ``reference``; inf when the counts differ."""
    if len(faces) != len(reference):
        return float("inf")
    return max(
        (abs(a - b) for f, r in zip(faces, reference, strict=True) for a, b in zip(f.box, r.box, strict=True)),
        default=0.0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--all", action="store_true", help="also the eager, all-traced and frozen torch variants")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation notices
    torch.set_num_threads(args.threads)

    frames = {
        "astronaut (1 face)": frame("astronaut.png"),
        "coffee (no face)": frame("coffee.png"),
    }
    with tempfile.TemporaryDirectory(prefix="mtcnn-onnx-") as tmp:
        variants = build_variants(args.threads, Path(tmp), args.all)
    times: dict[tuple[str, str], list[float]] = {(f, v): [] for f in frames for v in variants}
    found: dict[tuple[str, str], list[Face]] = {}
    for i in range(args.warmup + args.repeats):
        for fname, image in frames.items():
            for vname, (nets, engine) in variants.items():
                start = time.perf_counter()
                faces = detect_faces(image, *nets, engine=engine)
                elapsed = (time.perf_counter() - start) * 1000
                found[fname, vname] = faces
                if i >= args.warmup:
                    times[fname, vname].append(elapsed)

    import onnxruntime

    print(
        f"MTCNN per 640x480 frame, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"{args.threads} thread(s), {args.repeats} runs (median / p90 ms)"
    )
    print(f"{'frame':<20} {'variant':<22} {'median':>8} {'p90':>8} {'faces':>6} {'box gap px':>11}")
    for (fname, vname), samples in times.items():
        p90 = statistics.quantiles(samples, n=10)[-1] if len(samples) > 1 else samples[0]
        gap = box_gap(found[fname, vname], found[fname, SHIPPED])
        print(
            f"{fname:<20} {vname:<22} {statistics.median(samples):8.1f} {p90:8.1f} "
            f"{len(found[fname, vname]):>6} {gap:>11.4f}"
        )


if __name__ == "__main__":
    main()
