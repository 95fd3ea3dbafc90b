"""OCR latency per image: our runner (runtime/ocr.py) and the rapidocr library, side by side in one run.

    python -m bench.ocr_speed [--threads 2] [--repeats 10] [--out bench/results/ocr_speed.md]   # from the repo root

Both run the same PP-OCRv6 small graphs from build/models/rapidocr/models (`make models`) on ONNX
Runtime with ``--threads`` intra-op threads. Ours: numpy DB boxes and CTC decoding, no direction
classifier. rapidocr 3.10 as shipped (OpenCV, pyclipper, shapely; its 180-degree direction classifier
on by default) and with ``Global.use_cls = false`` (the same work as ours). Its dependencies come
with requirements/dev.txt. Images: text rendered with Pillow's built-in font. Calls are interleaved
round-robin so drift from other load hits every runner alike. The table shows median and p90 ms per
image and whether each runner read every rendered line exactly.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from bench.machine import machine_line
from edge_mm.build.ocr import DET_NAME, REC_NAME, rec_characters, render_text
from edge_mm.runtime.ocr import OcrReader, load_characters
from edge_mm.runtime.onnx_session import OnnxSession

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "build" / "models"
MODELS = PACKAGES / "rapidocr" / "models"

PAGE = [
    "Invoice 0042",
    "Edge inference, offline.",
    "KA-4721",
    "The quick brown fox jumps",
    "over the lazy dog 2024.",
    "Total: 13.50 EUR",
    "Thank you for your order",
    "Delivery within 5 days",
]
IMAGES: dict[str, tuple[list[str], tuple[int, int], int]] = {
    "plate 320x120, 1 line": (["KA-4721"], (320, 120), 40),
    "900x420, 3 lines": (["KA-4721", "The quick brown fox jumps", "over the lazy dog 2024."], (900, 420), 48),
    "1280x960, 8 lines": (PAGE, (1280, 960), 64),
}

Reader = Callable[[Image.Image], list[str]]


def our_reader(threads: int, chars: Path) -> Reader:
    det, rec = OnnxSession(MODELS / DET_NAME, threads), OnnxSession(MODELS / REC_NAME, threads)
    reader = OcrReader("bench", None, det, rec, load_characters(chars))  # type: ignore[arg-type]
    return lambda image: [line.text for line in reader.read(image, max_side=2000, max_lines=100)]


def rapidocr_reader(threads: int, use_cls: bool) -> Reader:
    if str(PACKAGES) not in sys.path:
        sys.path.append(str(PACKAGES))
    from rapidocr import RapidOCR

    engine = RapidOCR(
        params={
            "Global.log_level": "error",
            "Global.use_cls": use_cls,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
    )
    return lambda image: list(engine(np.asarray(image)[:, :, ::-1].copy()).txts or ())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args()
    if not (MODELS / REC_NAME).is_file():
        raise SystemExit(f"{MODELS / REC_NAME} not found: run `make models`")
    chars = Path(args.out.parent if args.out else "/tmp") / ".ocr_characters.txt"
    chars.write_text(rec_characters(MODELS / REC_NAME) + "\n", encoding="utf-8")
    readers = {
        "edge-mm (numpy post-processing)": our_reader(args.threads, chars),
        "rapidocr 3.10, no direction cls": rapidocr_reader(args.threads, False),
        "rapidocr 3.10 as shipped (cls)": rapidocr_reader(args.threads, True),
    }
    chars.unlink()
    images = {name: (lines, render_text(lines, size, font)) for name, (lines, size, font) in IMAGES.items()}
    times: dict[tuple[str, str], list[float]] = {(i, r): [] for i in images for r in readers}
    exact: dict[tuple[str, str], bool] = {}
    for n in range(args.warmup + args.repeats):
        for iname, (lines, image) in images.items():
            for rname, read in readers.items():
                start = time.perf_counter()
                texts = read(image)
                elapsed = (time.perf_counter() - start) * 1000
                exact[iname, rname] = texts == lines
                if n >= args.warmup:
                    times[iname, rname].append(elapsed)

    import onnxruntime

    rows = [
        f"OCR per image, PP-OCRv6 small det + rec, onnxruntime {onnxruntime.__version__}, "
        f"{args.threads} thread(s), {args.repeats} runs (median / p90 ms)",
        "",
        machine_line(),
        "",
        "| image | runner | median ms | p90 ms | read exactly |",
        "|---|---|---:|---:|---|",
    ]
    for (iname, rname), samples in times.items():
        p90 = statistics.quantiles(samples, n=10)[-1] if len(samples) > 1 else samples[0]
        rows.append(
            f"| {iname} | {rname} | {statistics.median(samples):.0f} | {p90:.0f} | "
            f"{'yes' if exact[iname, rname] else 'no'} |"
        )
    text = "\n".join(rows) + "\n"
    print(text)
    if args.out:
        args.out.write_text(f"# OCR speed (`python -m bench.ocr_speed`)\n\n{text}")


if __name__ == "__main__":
    main()
