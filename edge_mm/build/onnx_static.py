"""Static int8 ONNX graphs for conv nets: calibration photos, ``quantize_static`` (QDQ), a held-out gate.

Why static: dynamic int8 quantizes Linear layers only; in a conv net such as EfficientNet-Lite0
that is the classifier head (28% of the weights, well under 1% of the compute), so it bought nothing. Static int8 fixes every activation's range
from calibration images ahead of time, so ONNX Runtime fuses the QuantizeLinear/DequantizeLinear
pairs around each convolution into int8 kernels (VNNI on x86). EfficientNet-Lite was designed
for that (ReLU6, no squeeze-excitation). Measured on the build machine (AVX512-VNNI, in one
process, fp32 and int8 ONNX Runtime alternating, medians): int8 1.63x faster at batch 1 and 1.75x
at batch 8 with one intra-op thread, 1.62x and 1.67x with two.

On x86 without VNNI the same graph misses its gate (held-out top-1 agreement 0.625, max prob
diff 0.40 under ``qemu -cpu Haswell``, as on an AVX2 EPYC): the u8 x s8 kernels' 16-bit pair sums
saturate. Nothing tried held there at int8 speed (7-bit weights: 0.75 top-1 even on VNNI; s8s8
0.667 under Haswell; u8u8 holds but runs 3x slower than fp32), so the fp32 graph ships beside it
(``cpu-onnxruntime-fp32``) and the server's start-up gate (runtime/fidelity_gate.py) serves it there.

Calibration: the four sample photos (:func:`edge_mm.build.manifest_entry.sample_images`) under
deterministic crops and mirrors, 32 images. The gate uses other photos, never calibrated on
(:data:`HELDOUT_NAMES`, under the same crops and mirrors: 24 images), against the fp32 model.

Method: ``Percentile`` (99.999th, onnxruntime's default) by measured fidelity against fp32
(EfficientNet-Lite0, calibrated on the 32 images above). On the 24 held-out images: top-1
agreement 0.958 for both, max prob diff 0.139 against 0.178 for ``MinMax``; on 32 full-size
crops and mirrors of four other photos (scikit-image rocket and motorcycle, scikit-learn china
and flower): 1.000 for both, 0.077 against 0.093. ``Entropy``, with the bins ``quantize_static``
lets it use (128 histogram bins, 128 quantized bins), keeps the full range and wrote the same
graph as ``MinMax`` (onnxruntime 1.32).

Held-out photos (thumbnails, 256 px short side, in ``build/data``): ``heldout_rocket.jpg``,
SpaceX's DSCOVR launch (public domain; scikit-image ``rocket.jpg``); ``heldout_china.jpg`` and
``heldout_flower.jpg``, by danielbuechele and vultilion on Flickr, CC BY 2.0 (scikit-learn's
sample images).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from edge_mm.build import onnx_backend, verify
from edge_mm.build.manifest_entry import DATA, sample_images
from edge_mm.build.progress import Progress
from edge_mm.config import ModelSpec
from edge_mm.manifest import ORT_FP32_VARIANT, ORT_VARIANT, FileRef, Variant, sha256_file

CALIBRATION_METHOD = "Percentile"
HELDOUT_NAMES = ("rocket", "china", "flower")
# (left, top, right, bottom) as fractions of the image: whole, two corners, the centre.
CROPS = ((0.0, 0.0, 1.0, 1.0), (0.0, 0.0, 0.8, 0.8), (0.2, 0.2, 1.0, 1.0), (0.1, 0.1, 0.9, 0.9))
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def augment(image: Image.Image) -> list[Image.Image]:
    """``image`` under each of :data:`CROPS`, as is and mirrored: 8 images, always the same."""
    out = []
    for base in (image, ImageOps.mirror(image)):
        w, h = base.size
        out += [base.crop((round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h))) for x0, y0, x1, y1 in CROPS]
    return out


def calibration_images() -> list[Image.Image]:
    """The sample photos under :func:`augment` (32 images)."""
    return [a for image in sample_images() for a in augment(image)]


def heldout_images() -> list[Image.Image]:
    """Photos the calibration never sees, under :func:`augment` (24 images: one top-1 flip is 0.958)."""
    return [a for name in HELDOUT_NAMES for a in augment(Image.open(DATA / f"heldout_{name}.jpg").convert("RGB"))]


class CalibrationReader:
    """Preprocessed images for ``quantize_static``: ``{input_name: (n, 3, H, W) float32 NCHW}`` batches.

    onnxruntime takes any object with ``get_next`` as its ``CalibrationDataReader`` (a subclass
    hook), so this module imports onnxruntime only when it quantizes. ``rewind()`` starts over.
    """

    def __init__(self, input_name: str, pixels: np.ndarray, batch: int = 8) -> None:
        if pixels.ndim != 4 or len(pixels) == 0:
            raise ValueError(f"calibration pixels must be a non-empty (n, C, H, W) batch, got shape {pixels.shape}")
        self.input_name = input_name
        self.pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        self.batch = max(1, batch)
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.pixels):
            return None
        chunk = self.pixels[self._next : self._next + self.batch]
        self._next += self.batch
        return {self.input_name: chunk}

    def rewind(self) -> None:
        self._next = 0

    def __iter__(self) -> CalibrationReader:  # as onnxruntime's base class: some of its tools iterate
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = self.get_next()
        if batch is None:
            raise StopIteration
        return batch

    def __len__(self) -> int:
        return -(-len(self.pixels) // self.batch)


def quantize(
    fp32_path: Path,
    int8_path: Path,
    reader: CalibrationReader,
    method: str = CALIBRATION_METHOD,
    exclude: Sequence[str] = (),
) -> None:
    """``fp32_path`` -> static int8 QDQ graph at ``int8_path``: per-channel int8 weights, uint8 activations.

    ``exclude``: names of nodes left in fp32.

    The graph first goes through onnxruntime's ``quant_pre_process`` (shape inference, graph
    optimization), as its quantizer asks.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # its notes go to the root logger
    try:
        with tempfile.TemporaryDirectory(prefix="edge-mm-static-") as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(fp32_path), str(prepared))
            quantize_static(
                str(prepared),
                str(int8_path),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                calibrate_method=CalibrationMethod[method],
                nodes_to_exclude=list(exclude),
            )
    finally:
        logging.disable(previous)


def count_ops(path: Path, ops: Sequence[str] = QDQ_OPS) -> dict[str, int]:
    """How many nodes of each of ``ops`` the graph at ``path`` holds."""
    import onnx

    nodes = onnx.load(str(path), load_external_data=False).graph.node
    return {op: sum(n.op_type == op for n in nodes) for op in ops}


Fidelity = Callable[[Any], tuple[dict[str, Any], list[str]]]  # forward -> (figures, missed targets)


@dataclass
class StaticInt8:
    """The static int8 graph as built and gated; ``passes`` False means the fp32 graph serves."""

    passes: bool
    figures: dict[str, Any]
    misses: list[str] = field(default_factory=list)


def build(
    fp32_path: Path,
    int8_path: Path,
    input_name: str,
    calibration: np.ndarray,
    gate: Fidelity,
    open_forward: Callable[[Path], Any],
    method: str = CALIBRATION_METHOD,
) -> StaticInt8:
    """Quantize ``fp32_path`` into ``int8_path`` on ``calibration`` (NCHW pixels) and gate it.

    ``gate(forward)``: the held-out fidelity figures and the targets they miss; ``open_forward``
    loads a graph as a forward. A graph that misses is deleted, so it is never shipped.
    """
    quantize(fp32_path, int8_path, CalibrationReader(input_name, calibration), method)
    figures, misses = gate(open_forward(int8_path))
    figures = {
        "method": method,
        "format": "QDQ, per-channel int8 weights, uint8 activations",
        "calibration_images": len(calibration),
        "qdq_nodes": count_ops(int8_path),
        **figures,
    }
    if misses:
        int8_path.unlink(missing_ok=True)
    return StaticInt8(not misses, figures, misses)


def image_candidate(
    spec: ModelSpec,
    module: nn.Module,
    pre: Any,
    fp32: onnx_backend.OnnxBuild,
    out: Path,
    threads: int,
    progress: Progress,
) -> tuple[onnx_backend.OnnxBuild, dict[str, Any]]:
    """The static int8 graph of the passing fp32 ONNX candidate, when it meets the model's targets
    against the fp32 model on held-out photos; else the fp32 candidate, with the reason recorded.

    Returns (the candidate that stays, the ``int8_static`` record: figures, applied, reason).
    """
    gate, heldout = _heldout_gate(spec, module, pre)
    path, int8 = out / "cpu.onnx", out / "cpu.int8.onnx"
    calibration = pre(calibration_images()).contiguous().numpy()
    try:
        built = build(path, int8, "pixel_values", calibration, gate, lambda p: onnx_backend.OrtForward(p, threads))
    except Exception as exc:
        if spec.artifact_backend == "onnxruntime":
            raise
        int8.unlink(missing_ok=True)
        reason = f"static int8 failed: {type(exc).__name__}: {exc}"[:300]
        progress(f"{reason}; the fp32 ONNX graph stays")
        return fp32, {"applied": False, "reason": reason}
    if not built.passes:
        reason = f"{'; '.join(built.misses)}: the fp32 ONNX graph stays"
        progress(f"static int8 refused: {reason}")
        return fp32, {**built.figures, "applied": False, "reason": reason}
    vs = built.figures["heldout_vs_fp32"]
    reason = f"held-out {vs} meets top-1 >= {spec.min_top1_agreement}, prob diff <= {spec.max_prob_diff}"
    static = _static_int8_build(built, fp32, path, int8, heldout, threads, reason, progress)
    return static, {**built.figures, "applied": True, "reason": reason}


def _heldout_gate(spec: ModelSpec, module: nn.Module, pre: Any) -> tuple[Fidelity, int]:
    """The static graph's gate: the fp32 model's answers on the held-out photos and the model's targets.

    Returns (the gate, how many held-out photos it runs)."""
    held = pre(heldout_images())
    with torch.inference_mode():
        ref_logits, ref_features = module(held)
    held = held.contiguous()  # ONNX Runtime takes NCHW

    def gate(f: Any) -> tuple[dict[str, Any], list[str]]:
        logits, features = f(held)
        vs = verify.classifier_figures(ref_logits, logits)
        figs = {
            "heldout_images": len(held),
            "heldout_vs_fp32": vs,
            "heldout_features_vs_fp32": verify.cosine_figures(ref_features, features),
        }
        return figs, [
            f"held-out {m}" for m in verify.classifier_misses(vs, spec.min_top1_agreement, spec.max_prob_diff)
        ]

    return gate, len(held)


def _static_int8_build(
    built: StaticInt8,
    fp32: onnx_backend.OnnxBuild,
    path: Path,
    int8: Path,
    heldout: int,
    threads: int,
    reason: str,
    progress: Progress,
) -> onnx_backend.OnnxBuild:
    """The passing static graph takes ``path``; the fp32 graph it was made from stays beside it as the
    start-up gate's fallback variant."""
    fallback_path = path.with_name(path.stem + ".fp32.onnx")
    os.replace(path, fallback_path)  # the fp32 graph stays, as the start-up gate's fallback
    os.replace(int8, path)
    notes = [
        *onnx_backend.variant_notes(0, 0, False),
        f"static int8 QDQ ({built.figures['format']})",
        f"calibrated ({built.figures['method']}) on {built.figures['calibration_images']} images",
        f"gated on {heldout} held-out images",
    ]
    variant = Variant({"model": FileRef(path.name, sha256_file(path))}, "int8-static", notes, backend="onnxruntime")
    progress(f"static int8 is the ONNX candidate: {reason}")
    candidate = onnx_backend.Candidate(ORT_VARIANT, True, [], dict(built.figures["heldout_vs_fp32"]))
    forward = onnx_backend.OrtForward(path, threads)
    fallback = Variant(
        {"model": FileRef(fallback_path.name, sha256_file(fallback_path))},
        "float32",
        [*onnx_backend.variant_notes(0, 0, False), "the fp32 graph the static int8 one was made from"],
        backend="onnxruntime",
    )
    return onnx_backend.OnnxBuild(candidate, fp32.figures, variant, forward, {ORT_FP32_VARIANT: fallback})
