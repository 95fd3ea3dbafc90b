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
number of faces found, and the largest box difference (px) from the TorchScript pipeline and from
facenet-pytorch's own ``detect_face`` (when its source is installed beside the weights).
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

from bench.machine import machine_line
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


def box_gap(faces: list[Face], reference: list[Face] | np.ndarray) -> float:
    """Largest box coordinate difference (px) from ``reference`` (faces, or (K, 4) boxes); inf when the counts differ."""
    want = np.asarray([r.box for r in reference] if isinstance(reference, list) else reference).reshape(-1, 4)
    if len(faces) != len(want):
        return float("inf")
    return float(np.abs(np.asarray([f.box for f in faces]).reshape(-1, 4) - want).max(initial=0.0))


def facenet_boxes(image: np.ndarray) -> np.ndarray | None:
    """facenet-pytorch's own ``detect_face`` on ``image`` (eager nets): (K, 4) boxes clipped to the image,
    most confident first; None when its source is not installed."""
    path = WEIGHTS.parent / "models" / "utils" / "detect_face.py"
    spec = importlib.util.spec_from_file_location("_facenet_detect_face", path)
    if not path.is_file() or spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with torch.no_grad():
        boxes, _ = module.detect_face(image, 20, *load_mtcnn_nets(WEIGHTS), [0.6, 0.7, 0.7], 0.709, torch.device("cpu"))
    boxes = np.asarray(boxes[0], dtype=np.float64).reshape(-1, 5)
    boxes = boxes[np.argsort(-boxes[:, 4], kind="stable")]
    height, width = image.shape[:2]
    return boxes[:, :4].clip(0, [width, height, width, height])


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

    reference = {name: facenet_boxes(image) for name, image in frames.items()}

    print(machine_line())
    print(
        f"MTCNN per 640x480 frame, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"{args.threads} thread(s), {args.repeats} runs (median / p90 ms)"
    )
    print(f"{'frame':<20} {'variant':<22} {'median':>8} {'p90':>8} {'faces':>6} {'vs TS px':>9} {'vs facenet px':>14}")
    for (fname, vname), samples in times.items():
        p90 = statistics.quantiles(samples, n=10)[-1] if len(samples) > 1 else samples[0]
        faces = found[fname, vname]
        gap = box_gap(faces, found[fname, SHIPPED])
        ref = reference[fname]
        ref_gap = f"{box_gap(faces, ref):14.1e}" if ref is not None else f"{'n/a':>14}"
        print(
            f"{fname:<20} {vname:<22} {statistics.median(samples):8.1f} {p90:8.1f} {len(faces):>6} {gap:9.1e} {ref_gap}"
        )


if __name__ == "__main__":
    main()
