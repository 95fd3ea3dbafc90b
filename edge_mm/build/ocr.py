"""Build OCR: rapidocr 3.10's shipped PP-OCRv6 small detection and recognition graphs, copied unchanged.

Source: ``package:rapidocr/models`` (the folder with ``PP-OCRv6_det_small.onnx`` and
``PP-OCRv6_rec_small.onnx``). The recognizer's dictionary lives in the rec graph's metadata
(``character``, one entry a line); it is written beside the graphs as ``characters.txt`` so the
runtime reads a plain, hashed file. Nothing is exported or quantized; the build checks that the
copied pair reads a rendered sample exactly and records a probe reference for `edge-mm check`.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from edge_mm.build.errors import BuildError
from edge_mm.build.manifest_entry import built_entry, file_ref, write_reference
from edge_mm.build.progress import Progress
from edge_mm.config import ModelSpec
from edge_mm.errors import ConfigError
from edge_mm.manifest import NO_CUDA_KEY, ORT_VARIANT, FileRef, ModelEntry, Variant
from edge_mm.runtime.ocr import OcrReader, load_characters
from edge_mm.runtime.onnx_session import OnnxSession

DET_NAME = "PP-OCRv6_det_small.onnx"
REC_NAME = "PP-OCRv6_rec_small.onnx"
SAMPLE_LINES = ("KA-4721", "Edge inference, offline.")
# Shapes run through each graph for `edge-mm check` (det: the text map; rec: each step's best probability).
OCR_PROBES = [{"net": "det", "shape": [1, 3, 64, 96]}, {"net": "rec", "shape": [1, 3, 48, 160]}]


def render_text(
    lines: tuple[str, ...] | list[str], size: tuple[int, int] = (900, 420), font_size: int = 48
) -> Image.Image:
    """Black lines on white in Pillow's built-in font (no font files needed), 40 px from the left."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    for i, line in enumerate(lines):
        draw.text((40, 40 + i * (font_size + 40)), line, fill="black", font=font)
    return image


def rec_characters(rec: Path) -> str:
    """The recognizer's dictionary from the graph's ``character`` metadata (what rapidocr reads)."""
    import onnxruntime as ort

    meta = ort.InferenceSession(str(rec), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    if "character" not in meta:
        raise ConfigError(f"{rec.name} carries no 'character' metadata: not a PP-OCR recognizer as rapidocr ships it")
    return meta["character"]


def build_ocr(spec: ModelSpec, source: Path, out: Path, progress: Progress) -> ModelEntry:
    t0 = time.perf_counter()
    if spec.artifact_backend == "torchscript":
        raise ConfigError(f"model {spec.name}: OCR serves the shipped ONNX graphs only; use artifact_backend = auto")
    files = _copy_graphs(spec, source if source.is_dir() else source.parent, out)
    det, rec = OnnxSession(out / DET_NAME, 1), OnnxSession(out / REC_NAME, 1)
    characters = load_characters(out / "characters.txt")
    reader = OcrReader(spec.name, None, det, rec, characters)  # type: ignore[arg-type]  # no entry yet
    figures = _read_sample(spec, reader, len(characters), progress)
    reference = write_reference(
        out / "reference.json", OCR_PROBES, [o.tolist() for o in reader.check_outputs(OCR_PROBES)]
    )
    notes = ["shipped PP-OCRv6 small graphs, unchanged", "numpy DB boxes and CTC decoding; no direction classifier"]
    return built_entry(
        spec,
        t0,
        figures,
        variants={ORT_VARIANT: Variant(files=files, dtype="float32", notes=notes, backend="onnxruntime")},
        inputs=[{"name": "image", "dtype": "uint8", "shape": ["H", "W", 3], "note": "RGB; BGR into the graphs"}],
        outputs=[{"name": "lines", "fields": ["text", "score", "box"]}],
        preprocessing={
            "det_limit_side": 736,
            "det_thresh": 0.3,
            "box_thresh": 0.5,
            "unclip_ratio": 1.6,
            "rec_height": 48,
        },
        files={"reference": reference},
        options=dict(spec.options),
        backends={
            "setting": spec.artifact_backend,
            "serves": "onnxruntime",
            "reason": "ONNX Runtime: the graphs as rapidocr ships them (no TorchScript form)",
        },
    )


def _copy_graphs(spec: ModelSpec, folder: Path, out: Path) -> dict[str, FileRef]:
    """The detection and recognition graphs copied unchanged, and the recognizer's dictionary as characters.txt."""
    for name in (DET_NAME, REC_NAME):
        if not (folder / name).is_file():
            raise ConfigError(
                f"model {spec.name}: {folder / name} not found; source must be 'package:rapidocr/models' (rapidocr==3.10.0)"
            )
        shutil.copyfile(folder / name, out / name)
    (out / "characters.txt").write_text(rec_characters(out / REC_NAME) + "\n", encoding="utf-8")
    return {
        "det": file_ref(out / DET_NAME, out),
        "rec": file_ref(out / REC_NAME, out),
        "characters": file_ref(out / "characters.txt", out),
    }


def _read_sample(spec: ModelSpec, reader: OcrReader, classes: int, progress: Progress) -> dict[str, Any]:
    """The rendered sample lines must read back exactly; returns the build's figures."""
    sample = render_text(SAMPLE_LINES)
    t_read = time.perf_counter()
    lines = reader.read(sample, max_side=2000, max_lines=50)
    read_ms = (time.perf_counter() - t_read) * 1000
    texts = [line.text for line in lines]
    figures: dict[str, Any] = {
        "classes": classes,
        "sample_lines": texts,
        "sample_min_score": round(min((line.score for line in lines), default=0.0), 5),
        "sample_read_ms_1_thread": round(read_ms, 1),
        NO_CUDA_KEY: "OCR serves the shipped graphs on ONNX Runtime's CPU provider in this version",
    }
    if texts != list(SAMPLE_LINES):
        raise BuildError(f"model {spec.name}: the rendered sample reads {texts}, not {list(SAMPLE_LINES)}")
    progress(f"PP-OCRv6 det + rec copied ({classes} classes); sample read exactly in {read_ms:.0f} ms")
    return figures
