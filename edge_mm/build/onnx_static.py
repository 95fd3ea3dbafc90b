"""Static int8 ONNX graphs for conv nets: calibration photos, ``quantize_static`` (QDQ), a held-out gate.

Why static: dynamic int8 quantizes Linear layers only; in a conv net such as EfficientNet-Lite0
that is the classifier head (28% of the weights, well under 1% of the compute), so it bought nothing. Static int8 fixes every activation's range
from calibration images ahead of time, so ONNX Runtime fuses the QuantizeLinear/DequantizeLinear
pairs around each convolution into int8 kernels (VNNI on x86). EfficientNet-Lite was designed
for that (ReLU6, no squeeze-excitation). Measured on the build machine (AVX512-VNNI, in one
process, fp32 and int8 ONNX Runtime alternating, medians): int8 1.63x faster at batch 1 and 1.75x
at batch 8 with one intra-op thread, 1.62x and 1.67x with two.

On x86 without VNNI the same graph misses its gate (held-out top-1 agreement 0.625, max prob
diff 0.41 with the CPU's AVX-512 and VNNI hidden (scripts/cpumask.sh avx2), as under ``qemu -cpu
Haswell`` and on an AVX2 EPYC): the u8 x s8 kernels add pairs of products in 16 bits
(``vpmaddubsw``), which saturate when a pair of 8-bit weights is large. So a second form ships
beside it, ``cpu-onnxruntime-7bit`` (:func:`quantize` with ``seven_bit``), which cannot saturate:

- the weights of every conv that runs on the u8 x s8 GEMM (all but the depthwise ones) are 7-bit
  (per channel, within +-64): a pair sums to at most 2 x 255 x 64 = 32640 < 32767;
- depthwise convs keep 8-bit weights (their kernel widens to 32 bits before it adds: the same
  answers on every path) and the classifier ``Gemm`` stays fp32 (0.3% of the compute);
- 7-bit weights cost fidelity (per channel on every GEMM conv: held-out top-1 0.917, max prob diff
  0.23, on every CPU). The two convs whose 7-bit weights cost most on the calibration images
  (ranked by putting each back to fp32 in turn) take 8-bit *unsigned* weights instead: ONNX
  Runtime runs a u8 x u8 conv on a kernel that widens to 16 bits and adds in 32 (exact on every
  path, slower, so only for those two). On EfficientNet-Lite0 they are the stem and
  ``_blocks.0._project_conv``, and the form holds its gate as the 8-bit one does, the same on VNNI
  and AVX2. Tried and dropped: the costliest conv with fp32 weights (0.958 / 0.18, 12% slower on
  AVX2); 8-bit weights with each pair's magnitudes capped at 128 (the largest weights halved: 0.29).

Figures by CPU path, with the speed against fp32 on each (this CPU with AVX-512 and VNNI hidden
from ``cpuid`` runs the AVX2 kernels at native speed): ``python -m bench.cpu_paths --cpus
native,mask:avx2,mask:avx512`` (bench/results/cpu_paths.md, docs/cpu-paths.md). Where the form
for the serving CPU misses, the fp32 graph (``cpu-onnxruntime-fp32``) serves: the server's
start-up gate (runtime/fidelity_gate.py) picks among them on the CPU it runs on.

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
from edge_mm.manifest import ORT_7BIT_VARIANT, ORT_FP32_VARIANT, ORT_VARIANT, FileRef, Variant, sha256_file
from edge_mm.runtime import cpu_features

CALIBRATION_METHOD = "Percentile"
HELDOUT_NAMES = ("rocket", "china", "flower")
# (left, top, right, bottom) as fractions of the image: whole, two corners, the centre.
CROPS = ((0.0, 0.0, 1.0, 1.0), (0.0, 0.0, 0.8, 0.8), (0.2, 0.2, 1.0, 1.0), (0.1, 0.1, 0.9, 0.9))
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
SEVEN_BIT_U8_CONVS = 2  # convs of the 7-bit form given 8-bit unsigned weights (u8 x u8: exact), the costliest first


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
    seven_bit: bool = False,
) -> dict[str, Any]:
    """``fp32_path`` -> static int8 QDQ graph at ``int8_path``: per-channel int8 weights, uint8 activations.

    ``exclude``: names of nodes left in fp32. ``seven_bit``: the form for x86 without VNNI (module
    docstring): 7-bit weights on the GEMM convs, the ``Gemm``/``MatMul`` nodes in fp32, and the
    :data:`SEVEN_BIT_U8_CONVS` convs whose 7-bit weights cost most on the calibration images with
    8-bit unsigned weights (quantized twice: once to rank them). Returns what the form is:
    {"weight_bits", "u8_weight_convs", "fp32_nodes"}.

    The graph first goes through onnxruntime's ``quant_pre_process`` (shape inference, graph
    optimization), as its quantizer asks.
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # its notes go to the root logger
    try:
        with tempfile.TemporaryDirectory(prefix="edge-mm-static-") as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(fp32_path), str(prepared))
            if not seven_bit:
                _quantize_static(prepared, int8_path, reader, method, list(exclude), {})
                return {"weight_bits": 8, "u8_weight_convs": [], "fp32_nodes": list(exclude)}
            graph = onnx.load(str(prepared)).graph
            convs = {n.name: n.input[1] for n in _gemm_convs(graph)}
            dense = [*exclude, *(n.name for n in graph.node if n.op_type in ("Gemm", "MatMul"))]
            seven = {weight: [{"axis": 0, "reduce_range": True}] for weight in convs.values()}
            _quantize_static(prepared, int8_path, reader, method, dense, seven)
            costly = _costliest_convs(int8_path, graph, reader.pixels, SEVEN_BIT_U8_CONVS)
            if costly:
                u8 = {convs[name]: [{"axis": 0, "quant_type": _qtype("QUInt8")}] for name in costly}
                again = CalibrationReader(reader.input_name, reader.pixels, reader.batch)
                _quantize_static(prepared, int8_path, again, method, dense, {**seven, **u8})
    finally:
        logging.disable(previous)
    return {"weight_bits": 7, "u8_weight_convs": costly, "fp32_nodes": dense}


def _qtype(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    return QuantType[name]


def _quantize_static(
    prepared: Path, out: Path, reader: CalibrationReader, method: str, exclude: list[str], overrides: dict[str, Any]
) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    quantize_static(
        str(prepared),
        str(out),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=_qtype("QInt8"),
        activation_type=_qtype("QUInt8"),
        calibrate_method=CalibrationMethod[method],
        nodes_to_exclude=exclude,
        extra_options={"TensorQuantOverrides": overrides} if overrides else {},
    )


def _gemm_convs(graph: Any) -> list[Any]:
    """The Conv nodes ONNX Runtime runs on its u8 x s8 GEMM: all but the depthwise (grouped) ones."""
    return [n for n in graph.node if n.op_type == "Conv" and all(a.i == 1 for a in n.attribute if a.name == "group")]


def _costliest_convs(path: Path, fp32_graph: Any, pixels: np.ndarray, count: int) -> list[str]:
    """The ``count`` GEMM convs of the int8 graph at ``path`` whose quantized weights cost most: each put
    back to its fp32 weights in turn, the mean L1 distance of the class probabilities from the fp32
    graph's on ``pixels`` (the calibration images); the lowest distance is the costliest conv."""
    import onnx

    model = onnx.load(str(path))
    weights = {t.name: t for t in fp32_graph.initializer}
    made_by = {out: n for n in model.graph.node for out in n.output}
    reference = _probabilities(onnx.helper.make_model(fp32_graph, opset_imports=model.opset_import), pixels)

    def with_fp32_weights(name: str) -> Any:
        out = onnx.ModelProto()
        out.CopyFrom(model)
        node = next(n for n in out.graph.node if n.name == name)
        node.input[1] = made_by[node.input[1]].input[0].removesuffix("_quantized")
        out.graph.initializer.append(weights[node.input[1]])
        return out

    candidates = [
        n.name
        for n in _gemm_convs(model.graph)
        if n.input[1] in made_by and made_by[n.input[1]].input[0].removesuffix("_quantized") in weights
    ]
    cost = {
        name: float(np.abs(_probabilities(with_fp32_weights(name), pixels) - reference).sum(1).mean())
        for name in candidates
    }
    return sorted(candidates, key=lambda name: cost[name])[:count]


def _probabilities(model: Any, pixels: np.ndarray) -> np.ndarray:
    """Softmax of the first output of ``model`` (an ONNX ModelProto) on ``pixels``, one thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    logits = np.concatenate([session.run(None, {name: pixels[i : i + 16]})[0] for i in range(0, len(pixels), 16)])
    e = np.exp(logits - logits.max(1, keepdims=True))
    return np.asarray(e / e.sum(1, keepdims=True))


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
    seven_bit: bool = False,
) -> StaticInt8:
    """Quantize ``fp32_path`` into ``int8_path`` on ``calibration`` (NCHW pixels) and gate it.

    ``gate(forward)``: the held-out fidelity figures and the targets they miss; ``open_forward``
    loads a graph as a forward. ``seven_bit``: the form for x86 without VNNI (:func:`quantize`).
    The graph stays at ``int8_path`` either way: the caller decides what ships.
    """
    form = quantize(fp32_path, int8_path, CalibrationReader(input_name, calibration), method, seven_bit=seven_bit)
    figures, misses = gate(open_forward(int8_path))
    bits = form["weight_bits"]
    figures = {
        "method": method,
        "format": f"QDQ, per-channel int{bits} weights, uint8 activations"
        + (" (depthwise convs int8, the costliest convs uint8, dense layers fp32)" if seven_bit else ""),
        "calibration_images": len(calibration),
        "qdq_nodes": count_ops(int8_path),
        **({"u8_weight_convs": form["u8_weight_convs"], "fp32_nodes": form["fp32_nodes"]} if seven_bit else {}),
        **figures,
    }
    return StaticInt8(not misses, figures, misses)


# The static int8 forms of a conv net: 8-bit weights (VNNI, AMX, Arm: 32-bit accumulation) and
# 7-bit weights on the GEMM convs (x86 without VNNI, whose 16-bit pair sums saturate with 8-bit ones).
FORMS = {ORT_VARIANT: "cpu.int8.onnx", ORT_7BIT_VARIANT: "cpu.7bit.onnx"}


def image_candidate(
    spec: ModelSpec,
    module: nn.Module,
    pre: Any,
    fp32: onnx_backend.OnnxBuild,
    out: Path,
    threads: int,
    progress: Progress,
) -> tuple[onnx_backend.OnnxBuild, dict[str, Any]]:
    """The static int8 graphs of the passing fp32 ONNX candidate, when the form this CPU serves meets the
    model's targets against the fp32 model on held-out photos; else the fp32 candidate, with the reason.

    Both forms are built. The 8-bit one is the candidate (``cpu-onnxruntime``) and the 7-bit one ships
    beside it when it meets the targets (its answers are the same on every x86 path, so meeting them
    here is meeting them everywhere). On a CPU without VNNI the 8-bit form cannot be measured as a VNNI
    CPU runs it: it ships unverified here, noted, and the server's start-up gate measures it where it serves.

    Returns (the candidate that stays, the ``int8_static`` record: figures, applied, reason).
    """
    gate, heldout = _heldout_gate(spec, module, pre)
    path = out / "cpu.onnx"
    calibration = pre(calibration_images()).contiguous().numpy()
    here = onnx_backend.form_for_this_cpu(FORMS)
    built: dict[str, StaticInt8] = {}

    def opener(graph: Path) -> onnx_backend.OrtForward:
        return onnx_backend.OrtForward(graph, threads)

    try:
        for key, name in FORMS.items():
            built[key] = build(
                path, out / name, "pixel_values", calibration, gate, opener, seven_bit=key != ORT_VARIANT
            )
    except Exception as exc:
        if spec.artifact_backend == "onnxruntime":
            raise
        _remove_forms(out)
        reason = f"static int8 failed: {type(exc).__name__}: {exc}"[:300]
        progress(f"{reason}; the fp32 ONNX graph stays")
        return fp32, {"applied": False, "reason": reason}
    record = {**built[ORT_VARIANT].figures, "seven_bit": built[ORT_7BIT_VARIANT].figures, "served_on_build_cpu": here}
    if not built[here].passes:
        _remove_forms(out)
        form = "" if here == ORT_VARIANT else f"{here}: "
        reason = f"{form}{'; '.join(built[here].misses)}: the fp32 ONNX graph stays"
        progress(f"static int8 refused: {reason}")
        return fp32, {**record, "applied": False, "reason": reason}
    vs = built[here].figures["heldout_vs_fp32"]
    reason = f"held-out {vs} meets top-1 >= {spec.min_top1_agreement}, prob diff <= {spec.max_prob_diff}"
    if here != ORT_VARIANT:
        reason = f"{here} (this CPU's u8 x s8 kernels saturate with 8-bit weights): {reason}"
    static = _static_int8_build(built, here, fp32, path, out, (heldout, threads), reason, progress)
    return static, {**record, "applied": True, "reason": reason}


def _remove_forms(out: Path) -> None:
    for name in FORMS.values():
        (out / name).unlink(missing_ok=True)


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
    built: dict[str, StaticInt8],
    here: str,
    fp32: onnx_backend.OnnxBuild,
    path: Path,
    out: Path,
    sizes: tuple[int, int],
    reason: str,
    progress: Progress,
) -> onnx_backend.OnnxBuild:
    """The 8-bit static graph takes ``path``; the 7-bit one ships beside it when it passes, and the fp32
    graph they were made from stays as the start-up gate's fallback variant. ``here``: the form this
    CPU serves (its figures are the candidate's); ``sizes``: (held-out images, build threads)."""
    heldout, threads = sizes
    fallback_path = path.with_name(path.stem + ".fp32.onnx")
    os.replace(path, fallback_path)  # the fp32 graph stays, as the start-up gate's fallback
    os.replace(out / FORMS[ORT_VARIANT], path)
    eight, seven = built[ORT_VARIANT], built[ORT_7BIT_VARIANT]
    notes = [*onnx_backend.variant_notes(0, 0, False), f"static int8 QDQ ({eight.figures['format']})"]
    notes += [f"calibrated ({eight.figures['method']}) on {eight.figures['calibration_images']} images"]
    notes += [f"gated on {heldout} held-out images"]
    if eight.misses:  # only on a CPU without VNNI: the form is for the others, measured where it serves
        notes.append(f"measured on {cpu_features.detect().path}: {'; '.join(eight.misses)}")
    variant = Variant({"model": FileRef(path.name, sha256_file(path))}, "int8-static", notes, backend="onnxruntime")
    progress(f"static int8 is the ONNX candidate: {reason}")
    candidate = onnx_backend.Candidate(ORT_VARIANT, True, [], dict(built[here].figures["heldout_vs_fp32"]))
    forward = onnx_backend.OrtForward(path if here == ORT_VARIANT else out / FORMS[here], threads)
    fallback = Variant(
        {"model": FileRef(fallback_path.name, sha256_file(fallback_path))},
        "float32",
        [*onnx_backend.variant_notes(0, 0, False), "the fp32 graph the static int8 one was made from"],
        backend="onnxruntime",
    )
    extra = {ORT_FP32_VARIANT: fallback}
    seven_path = out / FORMS[ORT_7BIT_VARIANT]
    if seven.passes:
        u8 = ", ".join(seven.figures["u8_weight_convs"]) or "none"
        seven_notes = [*notes[:1], f"static int8 QDQ ({seven.figures['format']})", f"uint8 weights: {u8}"]
        seven_notes += [*notes[2:4], "serves on x86 without VNNI (answers equal on every x86 path)"]
        ref = FileRef(seven_path.name, sha256_file(seven_path))
        extra[ORT_7BIT_VARIANT] = Variant({"model": ref}, "int8-static", seven_notes, backend="onnxruntime")
        progress(f"static int8 7-bit form ships beside it: held-out {seven.figures['heldout_vs_fp32']}")
    else:
        seven_path.unlink(missing_ok=True)
        progress(f"static int8 7-bit form refused: {'; '.join(seven.misses)}")
    return onnx_backend.OnnxBuild(candidate, fp32.figures, variant, forward, extra)
