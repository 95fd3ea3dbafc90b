"""The second artifact backend: ONNX Runtime (export -> dynamic int8 -> verify), and the measured choice.

The same wrapped (and smoothed) fp32 model TorchScript traces is exported with the
TorchScript-based ``torch.onnx.export`` (dynamic batch and sequence axes), then its Linear
layers' MatMuls are quantized with ONNX Runtime's ``quantize_dynamic`` (int8 weights per
output channel), leaving in fp32 the MatMuls of the layers the int8 guard kept. Kept layers
are found by their weights, not by node names, so the match does not depend on the
exporter's naming. The builder then measures both backends' forward at batch 1 and 8
(:func:`measure_latency`) and :func:`choose_backend` picks the one that serves.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_mm import device as device_policy
from edge_mm.build import onnx_fold, onnx_rowwise
from edge_mm.build.quantize import is_kept
from edge_mm.manifest import ORT_7BIT_VARIANT, ORT_FP32_VARIANT, ORT_VARIANT, FileRef, Variant, sha256_file
from edge_mm.runtime import cpu_features
from edge_mm.runtime.onnx_session import OnnxSession

OPSET = 17
CRITERION = "geometric mean of the batch-1 and batch-8 forward times (ms); a tie serves TorchScript"
Forward = Callable[..., Any]
ROWWISE_FORM = "row-wise int8 activations, {bits}-bit per-column weights (exact on every CPU's int8 kernel)"
STATIC_FORM = "calibrated constant scales for {static} of {total} activations, row-wise for the rest"
WEIGHT_ONLY_FORM = "int8-stored weights dequantized in the graph: fp32 activations and GEMMs"


@dataclass
class Candidate:
    """One CPU backend as the build verified and timed it."""

    variant: str  # manifest variant key, e.g. "cpu" or "cpu-onnxruntime"
    passes: bool
    misses: list[str] = field(default_factory=list)  # why it fails, readable
    fidelity: dict[str, float] = field(default_factory=dict)  # int8 (or fp32) vs the fp32 eager reference
    latency_ms: dict[str, float] = field(default_factory=dict)  # {"batch_1": ms, "batch_8": ms}, medians

    @property
    def score(self) -> float:
        """Geometric mean of the measured forward times (ms); lower is faster."""
        times = list(self.latency_ms.values())
        return math.exp(sum(math.log(max(t, 1e-6)) for t in times) / len(times)) if times else math.inf


def choose_backend(setting: str, candidates: Mapping[str, Candidate]) -> tuple[str, str]:
    """(backend that serves, why) for ``artifact_backend = setting``; ValueError when it cannot serve.

    ``auto``: the fastest by :data:`CRITERION` among the candidates that pass their fidelity gates.
    """
    if setting in ("torchscript", "onnxruntime"):
        chosen = candidates.get(setting)
        if chosen is None or not chosen.passes:
            why = "; ".join(chosen.misses) if chosen else "not built"
            raise ValueError(f"artifact_backend = {setting}, but {setting} cannot serve: {why}")
        return setting, f"artifact_backend = {setting} in settings"
    if setting != "auto":
        raise ValueError(f"artifact_backend {setting!r} is not one of auto, torchscript, onnxruntime")
    passing = {name: c for name, c in candidates.items() if c.passes}
    if not passing:
        raise ValueError("no backend passes its fidelity targets")
    best = min(passing, key=lambda name: (passing[name].score, name != "torchscript"))
    failed = [f"{name} refused ({'; '.join(c.misses)})" for name, c in candidates.items() if not c.passes]
    others = [name for name in passing if name != best]
    if others:
        figures = ", ".join(f"{passing[n].score:.2f} ms ({n})" for n in others)
        why = f"auto: {best} measured fastest, {passing[best].score:.2f} ms against {figures}"
    else:
        why = f"auto: {best} is the only backend that passes"
    return best, "; ".join([why, *failed])


def backends_record(
    setting: str, candidates: Mapping[str, Candidate], threads: int, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The manifest's ``backends`` field: every candidate's figures, which one serves and why.

    Raises ValueError (from :func:`choose_backend`) when the setting's backend cannot serve.
    """
    serves, reason = choose_backend(setting, candidates)
    return {
        "setting": setting,
        "serves": serves,
        "reason": reason,
        "criterion": CRITERION,
        "threads": threads,
        "candidates": {name: asdict(c) for name, c in candidates.items()},
        **(extra or {}),
    }


def build_threads() -> int:
    """The intra-op threads one inference gets by default on this machine (runtime's derivation)."""
    return device_policy.cpu_threads(os.cpu_count() or 1, 0, 0)[0]


def versions() -> dict[str, str]:
    import onnxruntime

    return {"onnxruntime_version": onnxruntime.__version__, "opset": str(OPSET)}


def export(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
) -> Path:
    """fp32 ``module`` -> ONNX at ``path`` (TorchScript-based exporter; ``dynamic_axes`` by input/output name),
    with zero pads folded into the convolutions they feed (build/onnx_fold.py)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice and TracerWarnings inside HF models
        torch.onnx.export(
            module,
            tuple(t.contiguous() for t in example),
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    onnx_fold.fold_pads_into_convs(path)  # exact: "same" padding into the convs' own pads
    return path


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()


def nodes_for_layers(onnx_path: Path, model: nn.Module, keep_fp32: Sequence[str]) -> list[str]:
    """Names of the MatMul/Gemm nodes that compute ``model``'s Linear layers under ``keep_fp32``.

    A node matches a layer when its weight initializer holds the layer's weight (as is, or
    transposed: the exporter folds Linear into MatMul with W^T or Gemm with W). Kept layers
    the export dropped (unused outputs, e.g. a pooler) match nothing.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    inits = {i.name: i for i in graph.initializer}
    by_weight: dict[str, list[str]] = {}
    for node in graph.node:
        if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in inits:
            by_weight.setdefault(_digest(numpy_helper.to_array(inits[node.input[1]])), []).append(node.name)
    found: list[str] = []
    for name, layer in model.named_modules():
        if isinstance(layer, nn.Linear) and is_kept(name, keep_fp32):
            w = layer.weight.detach().float().cpu().numpy()
            found += by_weight.get(_digest(w.T), []) + by_weight.get(_digest(w), [])
    return sorted(set(found))


def quantize_int8(
    fp32_path: Path,
    int8_path: Path,
    exclude: Sequence[str],
    weight_bits: int = 8,
    tables: bool = True,
    static: Mapping[str, float] | None = None,
) -> onnx_rowwise.Rewrite:
    """Row-wise int8 of every MatMul with constant weights except ``exclude`` (build/onnx_rowwise.py:
    batch-invariant; with 7-bit weights its int8 GEMMs cannot saturate on any CPU's kernel), and with ``tables``
    int8 embedding tables (Gather): a third of the file and of the resident memory. ``static``: activations
    given a calibrated constant scale (onnx_rowwise.activation_ranges)."""
    with tempfile.TemporaryDirectory(prefix="edge-mm-rowwise-") as tmp:
        rowwise = Path(tmp) / "rowwise.onnx"
        done = onnx_rowwise.rowwise_int8(fp32_path, rowwise, exclude, weight_bits, static)
        if tables:
            int8_tables(rowwise, int8_path)
        else:
            shutil.copyfile(rowwise, int8_path)
    return done


def weight_only_int8(fp32_path: Path, out_path: Path, exclude: Sequence[str] = (), tables: bool = True) -> None:
    """The fp32-compute fallback (build/onnx_rowwise.py ``weight_only``; the MatMuls in ``exclude`` keep fp32
    weights, as in the int8 forms), with int8 embedding tables if ``tables``."""
    with tempfile.TemporaryDirectory(prefix="edge-mm-w8-") as tmp:
        w8 = Path(tmp) / "w8.onnx"
        onnx_rowwise.weight_only(fp32_path, w8, exclude)
        if tables:
            int8_tables(w8, out_path)
        else:
            shutil.copyfile(w8, out_path)


def int8_tables(src: Path, dst: Path) -> None:
    """Embedding tables (Gather on a constant) stored int8 per row, dequantized after the look-up."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # its "consider pre-processing" note goes to the root logger
    try:
        quantize_dynamic(src, dst, op_types_to_quantize=["Gather"], weight_type=QuantType.QInt8)
    finally:
        logging.disable(previous)


def count_ops(onnx_path: Path, op_type: str) -> int:
    import onnx

    return sum(n.op_type == op_type for n in onnx.load(str(onnx_path), load_external_data=False).graph.node)


class OrtForward:
    """An ONNX model as a build-time forward: CPU tensors in, tensors (or a tuple) out, like a traced module."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        self.session = OnnxSession(path, threads)

    def __call__(self, *inputs: torch.Tensor) -> Any:
        out = self.session(*(t.detach().cpu().contiguous().numpy() for t in inputs))
        return tuple(torch.from_numpy(o) for o in out) if isinstance(out, tuple) else torch.from_numpy(out)


def measure_latency(
    runs: Mapping[str, tuple[Forward, Mapping[str, tuple[Any, ...]]]],
    threads: int,
    rounds: Mapping[str, int],
    warm: int = 2,
) -> dict[str, dict[str, float]]:
    """Median forward time (ms) of each backend on each named input, at ``threads`` intra-op threads.

    ``runs``: backend -> (forward, {"batch_1": inputs, "batch_8": inputs}); ``rounds``: timed runs
    per input name. Backends alternate run by run, so a change in machine load hits both alike.
    ONNX Runtime forwards must have been made with ``threads`` already.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    times: dict[str, dict[str, list[float]]] = {b: {k: [] for k in rounds} for b in runs}
    try:
        with torch.inference_mode():
            for key, n in rounds.items():
                for i in range(warm + n):
                    for backend, (forward, inputs) in runs.items():
                        t0 = time.perf_counter()
                        forward(*inputs[key])
                        if i >= warm:
                            times[backend][key].append((time.perf_counter() - t0) * 1000)
    finally:
        torch.set_num_threads(before)
    return {b: {k: round(statistics.median(v), 3) for k, v in per.items()} for b, per in times.items()}


def variant_notes(
    quantized: int, kept: int, int8: bool, weight_bits: int = 8, done: onnx_rowwise.Rewrite | None = None
) -> list[str]:
    """``done``: the int8 rewrite (onnx_rowwise.Rewrite), for how its activations are scaled."""
    notes = ["ONNX (TorchScript-based exporter)", f"opset {OPSET}", "dynamic batch axis"]
    if int8:
        notes += [f"int8 MatMuls ({ROWWISE_FORM.format(bits=weight_bits)}): {quantized}", f"fp32 MatMuls kept: {kept}"]
    if int8 and done is not None and done.static_quantizers:
        notes.append(_static_note(done))
    return notes


def _static_note(done: onnx_rowwise.Rewrite) -> str:
    return STATIC_FORM.format(static=done.static_quantizers, total=done.static_quantizers + done.row_quantizers)


Checker = Callable[[Forward], tuple[dict[str, Any], list[str]]]  # forward -> (figures, missed targets)


@dataclass
class OnnxBuild:
    """The ONNX Runtime candidate: its figures, and (when it passes) the saved variant and its forward."""

    candidate: Candidate
    figures: dict[str, Any]
    variant: Variant | None = None
    forward: OrtForward | None = None
    # more variants of the same graph: the 7-bit int8 form, the fp32-compute fallback (keys as in the manifest)
    extra: dict[str, Variant] = field(default_factory=dict)


def build_candidate(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    io_names: tuple[Sequence[str], Sequence[str]],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    *,
    keep_fp32: Sequence[str] | None,
    check_fp32: Checker,
    fidelity: Checker,
    threads: int,
    strict: bool,
    calibration: Sequence[Mapping[str, np.ndarray]] = (),
) -> OnnxBuild:
    """Export ``module`` (fp32, already smoothed), quantize it unless ``keep_fp32`` is None, verify, save at ``path``.

    ``check_fp32``: traced-vs-eager style checks of the exported fp32 graph; ``fidelity``: the served
    graph against the fp32 reference (the same gates as TorchScript). ``strict``: a failure raises
    (artifact_backend = onnxruntime) instead of being recorded as a refusal (auto). ``calibration``:
    input feeds on which the activations that suit a constant scale are measured (onnx_rowwise
    ``static_candidates``); the int8 forms try those scales first. Empty: row-wise scales only.
    """
    figures: dict[str, Any] = {**versions()}
    try:
        with tempfile.TemporaryDirectory(prefix="edge-mm-onnx-") as tmp:
            fp32 = export(module, example, Path(tmp) / "fp32.onnx", io_names[0], io_names[1], dynamic_axes)
            made = _served_forms(fp32, module, path, keep_fp32, check_fp32, fidelity, threads, figures, calibration)
        served_here = form_for_this_cpu(made.forms)
        fid, fid_misses = made.checked[served_here]
        misses = made.misses + fid_misses
        forward = OrtForward(_form_path(path, served_here), threads)
        extra = _shipped_extras(path, made, served_here, fidelity, threads, figures)
    except Exception as exc:
        if strict:
            raise
        _remove_forms(path)
        reason = f"export or quantization failed: {type(exc).__name__}: {exc}"[:300]
        return OnnxBuild(Candidate(ORT_VARIANT, False, [reason]), figures)
    candidate = Candidate(ORT_VARIANT, not misses, misses, fid)
    if misses:
        _remove_forms(path)  # a refused graph is not shipped
        return OnnxBuild(candidate, figures)
    return OnnxBuild(candidate, figures, _served_variant(path, made), forward, extra)


@dataclass
class _Forms:
    """The graphs written at ``path``: the int8 forms by variant key (none for an fp32 graph), each form's
    fidelity (figures, misses), the served dtype, the MatMuls kept in fp32 and what the fp32 export missed."""

    forms: dict[str, onnx_rowwise.Rewrite]
    checked: dict[str, tuple[dict[str, Any], list[str]]]
    dtype: str
    exclude: list[str]
    misses: list[str]


def _served_forms(
    fp32: Path,
    module: nn.Module,
    path: Path,
    keep_fp32: Sequence[str] | None,
    check_fp32: Checker,
    fidelity: Checker,
    threads: int,
    figures: dict[str, Any],
    calibration: Sequence[Mapping[str, np.ndarray]] = (),
) -> _Forms:
    """Check the exported fp32 graph, then write what may serve at ``path``: the row-wise int8 forms and the
    weight-only fallback (``keep_fp32`` layers stay fp32), or the fp32 graph itself when ``keep_fp32`` is None."""
    fp32_figures, misses = check_fp32(OrtForward(fp32, threads))
    figures.update(fp32_figures)
    if keep_fp32 is None:
        shutil.copyfile(fp32, path)
        return _Forms({}, {ORT_VARIANT: fidelity(OrtForward(path, threads))}, "float32", [], misses)
    exclude = nodes_for_layers(fp32, module, keep_fp32)
    static = None
    if calibration:
        names = onnx_rowwise.static_candidates(fp32, exclude)
        static = onnx_rowwise.activation_ranges(fp32, names, calibration) if names else None
    forms, checked, tables = _int8_forms(fp32, path, exclude, fidelity, threads, static, figures)
    done = forms[ORT_VARIANT]
    figures.update(
        {
            "int8_matmuls": done.matmuls,
            "fp32_matmuls_kept": exclude,
            "int8_form": ROWWISE_FORM.format(bits=done.weight_bits),
            "row_quantizers": done.row_quantizers,
            "static_quantizers": done.static_quantizers,
            "int8_embedding_tables": tables,
        }
    )
    if done.static_quantizers:
        figures["activation_scales"] = _static_note(done) + f" (calibrated on {_rows(calibration)} inputs)"
    weight_only_int8(fp32, path.with_name(path.stem + ".fp32.onnx"), exclude, tables)
    return _Forms(forms, checked, "int8-rowwise", exclude, misses)


def _shipped_extras(
    path: Path, made: _Forms, served_here: str, fidelity: Checker, threads: int, figures: dict[str, Any]
) -> dict[str, Variant]:
    """The variants shipped beside the served form: the other int8 form and the fp32-compute fallback."""
    if made.forms:
        figures["int8_forms"] = {
            key: {"weight_bits": made.forms[key].weight_bits, "vs_fp32": f, "misses": m}
            for key, (f, m) in made.checked.items()
        }
        figures["served_on_build_cpu"] = served_here
    extra = _extra_forms(path, made.forms, made.checked, served_here, made.exclude if made.forms else [])
    fallback_path = path.with_name(path.stem + ".fp32.onnx")
    if fallback_path.exists() and (fallback := _fallback(fallback_path, fidelity, threads, figures)) is not None:
        extra[ORT_FP32_VARIANT] = fallback
    return extra


def serves_every_x86(figures: Mapping[str, Any]) -> bool:
    """True when a build's ONNX Runtime variants hold their gates on x86 with VNNI and without: built on a
    saturating CPU the served form is the 7-bit one (the 8-bit form ships for VNNI, whose kernel is exact);
    elsewhere the 7-bit form (it computes the same on both) or the fp32-compute fallback must have met them,
    or an AVX2 server that misses with the 8-bit form falls back to TorchScript (and loads torch)."""
    forms = figures.get("int8_forms")
    if not forms or figures.get("served_on_build_cpu") == ORT_7BIT_VARIANT:
        return True
    seven = forms.get(ORT_7BIT_VARIANT)
    fallback = figures.get("fallback")
    return (seven is not None and not seven["misses"]) or (fallback is not None and not fallback["misses"])


def why_not_every_x86(figures: Mapping[str, Any]) -> str:
    """Why :func:`serves_every_x86` is False, readable."""
    seven = figures.get("int8_forms", {}).get(ORT_7BIT_VARIANT, {}).get("misses") or ["not made"]
    fallback = figures.get("fallback", {}).get("misses") or ["not made"]
    return f"no form for x86 without VNNI: 7-bit {'; '.join(seven)}, fp32 compute {'; '.join(fallback)}"


def _served_variant(path: Path, made: _Forms) -> Variant:
    if not made.forms:
        notes = variant_notes(0, 0, False)
    else:
        done = made.forms[ORT_VARIANT]
        notes = variant_notes(done.matmuls, len(made.exclude), True, done.weight_bits, done)
        if made.checked[ORT_VARIANT][1]:  # the 8-bit form misses on this (saturating) CPU: it ships for the others
            notes.append(f"measured on {cpu_features.detect().path}: {'; '.join(made.checked[ORT_VARIANT][1])}")
    return Variant({"model": FileRef(path.name, sha256_file(path))}, made.dtype, notes, backend="onnxruntime")


def _int8_forms(
    fp32: Path,
    path: Path,
    exclude: Sequence[str],
    fidelity: Checker,
    threads: int,
    static: Mapping[str, float] | None = None,
    figures: dict[str, Any] | None = None,
) -> tuple[dict[str, onnx_rowwise.Rewrite], dict[str, tuple[dict[str, Any], list[str]]], bool]:
    """Every int8 form of ``fp32`` written beside ``path`` and checked: (forms, {key: (figures, misses)},
    int8 embedding tables?). Tried in turn: calibrated constant scales where ``static`` has them (kept only
    when every form meets the gates: a form that misses is not shipped, and its CPUs would fall back to
    fp32 compute), then all row-wise; int8 tables save a third of the file, unless they cost the gates (a
    fine-tuned NER's probabilities moved 0.26 with them, whatever Linear layers stayed fp32)."""
    tries = [(static, True)] if static else []
    for scales, tables in (*tries, (None, True), (None, False)):
        forms = {
            key: quantize_int8(fp32, _form_path(path, key), exclude, bits, tables, scales)
            for key, bits in INT8_FORMS.items()
        }
        checked = {key: fidelity(OrtForward(_form_path(path, key), threads)) for key in forms}
        if scales is not None:
            misses = [f"{key}: {'; '.join(m)}" for key, (_, m) in checked.items() if m]
            if not misses:
                break
            if figures is not None:
                figures["constant_scales_refused"] = misses
        elif not checked[form_for_this_cpu(forms)][1]:
            break
    return forms, checked, tables


def _rows(feeds: Sequence[Mapping[str, np.ndarray]]) -> int:
    return sum(len(next(iter(f.values()))) for f in feeds)


# The row-wise int8 forms of a text graph: 8-bit weights (VNNI, AMX, Arm: 32-bit accumulation) and
# 7-bit weights (x86 without VNNI, whose 16-bit pair sums saturate with 8-bit weights).
INT8_FORMS = {ORT_VARIANT: 8, ORT_7BIT_VARIANT: 7}


def _form_path(path: Path, key: str) -> Path:
    suffix = {ORT_VARIANT: "", ORT_7BIT_VARIANT: ".7bit", ORT_FP32_VARIANT: ".fp32"}[key]
    return path.with_name(path.stem + suffix + ".onnx")


def _remove_forms(path: Path) -> None:
    """Every graph a candidate may have written beside ``path`` (its int8 forms, the fp32-compute fallback)."""
    for key in (*INT8_FORMS, ORT_FP32_VARIANT):
        _form_path(path, key).unlink(missing_ok=True)


def form_for_this_cpu(forms: Mapping[str, Any]) -> str:
    """The int8 form the build's own CPU would serve (runtime/fidelity_gate.py ``path_variant`` picks alike)."""
    return ORT_7BIT_VARIANT if forms and cpu_features.detect().saturating else ORT_VARIANT


def _extra_forms(
    path: Path,
    forms: Mapping[str, onnx_rowwise.Rewrite],
    checked: Mapping[str, Any],
    served: str,
    exclude: Sequence[str],
) -> dict[str, Variant]:
    """The 7-bit form as its own variant when it meets the gates here (deleted when it does not)."""
    extra: dict[str, Variant] = {}
    if ORT_7BIT_VARIANT not in forms:
        return extra
    form_path = _form_path(path, ORT_7BIT_VARIANT)
    if checked[ORT_7BIT_VARIANT][1]:
        form_path.unlink()
        return extra
    done = forms[ORT_7BIT_VARIANT]
    notes = [*variant_notes(done.matmuls, len(exclude), True, done.weight_bits, done), "serves on x86 without VNNI"]
    ref = FileRef(form_path.name, sha256_file(form_path))
    extra[ORT_7BIT_VARIANT] = Variant({"model": ref}, "int8-rowwise", notes, backend="onnxruntime")
    return extra


def _fallback(path: Path, fidelity: Checker, threads: int, figures: dict[str, Any]) -> Variant | None:
    """The weight-only graph at ``path`` as the ``cpu-onnxruntime-fp32`` variant, when it meets the gates
    (it is what serves on a CPU whose int8 kernels miss them at start-up); deleted when it does not."""
    fid, misses = fidelity(OrtForward(path, threads))
    figures["fallback"] = {"variant": ORT_FP32_VARIANT, "form": WEIGHT_ONLY_FORM, "vs_fp32": fid, "misses": misses}
    if misses:
        path.unlink()
        return None
    notes = ["ONNX (TorchScript-based exporter)", f"opset {OPSET}", WEIGHT_ONLY_FORM]
    return Variant({"model": FileRef(path.name, sha256_file(path))}, "float32-w8", notes, backend="onnxruntime")


def decide(
    setting: str,
    candidates: Mapping[str, Candidate],
    runs: Mapping[str, tuple[Forward, Mapping[str, tuple[Any, ...]]]],
    threads: int,
    rounds: Mapping[str, int],
) -> dict[str, Any]:
    """Time the passing candidates (``runs``), record the figures on them, and return the ``backends`` record.

    ValueError when ``setting`` names a backend that cannot serve.
    """
    timed = {name: run for name, run in runs.items() if candidates[name].passes}
    for name, latency in measure_latency(timed, threads, rounds).items():
        candidates[name].latency_ms = latency
    return backends_record(setting, candidates, threads, versions() if "onnxruntime" in candidates else None)
