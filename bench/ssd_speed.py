"""SSD MobileNet v2 (COCO) latency per 640x480 frame at one client: the ssd-detection runner on ONNX Runtime.

    python -m bench.ssd_speed --onnx PATH/model.onnx [--threads 2] [--repeats 30] [--out bench/results/ssd_speed.md]

``--onnx``: the built artifact (``<artifacts>/<name>/model.onnx`` after `edge-mm build` of the commented
``coco-ssd`` block; the slow test leaves one in build/work/test-artifacts/ssd-real/artifacts/coco/).
Frames: scikit-image's photos resized to 640x480. Each call is the runner's whole path (PIL image ->
uint8 NHWC tensor -> graph with its own resize and NMS -> COCO-named boxes in px), one after another.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from PIL import Image

from bench.machine import machine_line
from edge_mm.build.ssd import PHOTOS, verification_photos
from edge_mm.runtime.onnx_session import OnnxSession
from edge_mm.runtime.ssd_detector import COCO_NAMES, SsdDetector, labels_by_id

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ONNX = ROOT / "build" / "work" / "test-artifacts" / "ssd-real" / "artifacts" / "coco" / "model.onnx"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, default=DEFAULT_ONNX)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args()
    if not args.onnx.is_file():
        raise SystemExit(f"{args.onnx} not found: build an ssd-detection model first")
    detector = SsdDetector("bench", None, OnnxSession(args.onnx, args.threads), labels_by_id(COCO_NAMES))
    photos, _ = verification_photos()
    frames = [p.resize((640, 480), Image.Resampling.BILINEAR) for p in photos]
    times: list[float] = []
    found: dict[str, str] = {}
    for n in range(args.warmup + args.repeats):
        for name, frame in zip(PHOTOS, frames, strict=False):
            start = time.perf_counter()
            preds = detector.predictions(frame, min_confidence=0.5)
            if n >= args.warmup:
                times.append((time.perf_counter() - start) * 1000)
            found[name] = ", ".join(f"{p['label']} {p['confidence']:.2f}" for p in preds)

    import onnxruntime

    p90 = statistics.quantiles(times, n=10)[-1]
    rows = [
        f"SSD MobileNet v2 COCO (ssd-detection) per 640x480 frame, 1 client, onnxruntime {onnxruntime.__version__}, "
        f"{args.threads} intra-op thread(s), {len(times)} frames",
        "",
        machine_line(),
        "",
        "| median ms | p90 ms | min ms | frames/s (1 client) |",
        "|---:|---:|---:|---:|",
        f"| {statistics.median(times):.0f} | {p90:.0f} | {min(times):.0f} | {1000 / statistics.median(times):.1f} |",
        "",
        "Detections at 0.5 on the resized frames: "
        + "; ".join(f"{name}: {labels or 'none'}" for name, labels in found.items()),
    ]
    text = "\n".join(rows) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
