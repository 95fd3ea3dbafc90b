"""Build text models (embeddings, text- and token-classification) from HF checkpoints."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_mm.build import artifact_backend, onnx_backend, verify
from edge_mm.build.accelerator import NO_GPU, resolve_accelerator
from edge_mm.build.errors import BuildError
from edge_mm.build.manifest_entry import built_entry
from edge_mm.build.progress import Progress, bar
from edge_mm.build.quantize import GuardResult, guard_int8
from edge_mm.build.smoothing import smooth_attention, smooth_linear_inputs
from edge_mm.build.text_checkpoint import Logits as Logits  # re-exported: bench/ imports it from here
from edge_mm.build.text_checkpoint import SentenceEmbedding as SentenceEmbedding  # re-exported, as Logits
from edge_mm.build.text_checkpoint import load_text_checkpoint, sample_sentences, save_tokenizer
from edge_mm.config import ModelSpec
from edge_mm.manifest import NO_CUDA_KEY, FileRef, ModelEntry, Variant, sha256_file
from edge_mm.runtime import fidelity_gate
from edge_mm.runtime.text_tokenizer import TextTokenizer

TRACE_TOLERANCE = 1e-4  # fp32 traced vs eager, max abs difference
_OUTPUTS: dict[str, list[dict[str, Any]]] = {
    "embeddings": [{"name": "embeddings", "dtype": "float32", "shape": ["batch", "dim"]}],
    "text-classification": [{"name": "logits", "dtype": "float32", "shape": ["batch", "labels"]}],
    "token-classification": [{"name": "logits", "dtype": "float32", "shape": ["batch", "seq", "labels"]}],
}
_INPUT_AXES = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
_OUTPUT_AXES = {  # ONNX export: which output axes vary
    "embeddings": {"embeddings": {0: "batch"}},
    "text-classification": {"logits": {0: "batch"}},
    "token-classification": {"logits": {0: "batch", 1: "seq"}},
}
_LATENCY_ROUNDS = {"batch_1": 25, "batch_8": 8}  # timed forwards per backend (medians)


def _verify_batches(tok: TextTokenizer, sentences: list[str], max_length: int) -> list[tuple[torch.Tensor, ...]]:
    """Padded batches of 1, 3 and 8 with lengths from a few tokens up to ``max_length``."""
    long = " ".join(sentences[:60])  # longer than any max_length we allow below 1000 tokens
    pieces = [
        sentences[0],
        sentences[1][:12],
        long,
        sentences[2],
        long[: len(long) // 3],
        "ok",
        sentences[3],
        sentences[4],
    ]
    batches: list[tuple[torch.Tensor, ...]] = []
    for size in (1, 3, 8):
        enc = tok.encode(pieces[:size] if size > 1 else [sentences[5]])
        batches.append((enc.input_ids, enc.attention_mask))
    assert max(batches[-1][0].shape[1], 0) <= max_length
    return batches


def _fidelity(spec: ModelSpec, ref: torch.Tensor, test: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    if spec.task == "embeddings":
        return verify.cosine_figures(ref, test)
    if spec.task == "token-classification":
        keep = mask.bool()
        return verify.classifier_figures(ref[keep], test[keep])
    return verify.classifier_figures(ref, test)


def _misses(spec: ModelSpec, figures: dict[str, float]) -> list[str]:
    """Which targets the int8 (or accelerator) figures miss, as readable lines."""
    if spec.task == "embeddings":
        checks = [
            ("mean_cosine", figures["mean_cosine"], spec.min_mean_cosine, ">="),
            ("min_cosine", figures["min_cosine"], spec.min_min_cosine, ">="),
        ]
    else:
        checks = [
            ("top1_agreement", figures["top1_agreement"], spec.min_top1_agreement, ">="),
            ("max_prob_diff", figures["max_prob_diff"], spec.max_prob_diff, "<="),
        ]
    return [
        f"{name} {value} (needs {op} {target})"
        for name, value, target, op in checks
        if (value < target if op == ">=" else value > target)
    ]


def _padded_mask(batches: Sequence[tuple[torch.Tensor, ...]]) -> torch.Tensor:
    """The attention masks of ``batches`` stacked, right-padded to the widest (matches :func:`_run`)."""
    width = max(b[1].shape[1] for b in batches)
    return torch.cat([nn.functional.pad(b[1], (0, width - b[1].shape[1])) for b in batches])


@torch.inference_mode()
def _run(
    forward: Callable[..., torch.Tensor], batches: Sequence[tuple[torch.Tensor, ...]], desc: str | None = None
) -> torch.Tensor:
    """``desc``: draw a progress bar under that name (the long passes over every sample sentence)."""
    outs = [forward(*b) for b in (bar(batches, desc, unit="batch") if desc else batches)]
    if outs[0].dim() == 3:  # pad per-token outputs to one width before concatenating
        width = max(o.shape[1] for o in outs)
        outs = [nn.functional.pad(o, (0, 0, 0, width - o.shape[1])) for o in outs]
    return torch.cat(outs)


_INPUTS = [
    {"name": "input_ids", "dtype": "int64", "shape": ["batch", "seq"]},
    {"name": "attention_mask", "dtype": "int64", "shape": ["batch", "seq"]},
]


def build_text_model(
    spec: ModelSpec, source: Path, out: Path, progress: Progress, *, accelerator: str | None = "cuda"
) -> ModelEntry:
    """Load, wrap, quantize (CPU), trace, freeze, verify and save one text model into ``out``.

    ``accelerator``: where the ``cuda`` variant is traced (see build/accelerator.py); None skips it.
    """
    t0 = time.perf_counter()
    model, labels, extra = load_text_checkpoint(spec, source)
    tok_path, pad_id = save_tokenizer(source, out)
    tok = TextTokenizer(tok_path, max_length=spec.max_length, pad_id=pad_id)
    sentences = sample_sentences()
    batches = _verify_batches(tok, sentences, spec.max_length)
    fidelity_batches = [
        (e.input_ids, e.attention_mask)
        for e in (tok.encode(sentences[i : i + 32]) for i in range(0, len(sentences), 32))
    ]
    fid_mask = _padded_mask(fidelity_batches)
    progress(f"loaded ({time.perf_counter() - t0:.1f} s)")

    traced_fp32, figures = _trace_fp32(spec, model, batches, progress)
    samples = _Samples(batches, fidelity_batches, fid_mask, _run(model, fidelity_batches, "verify: fp32 reference"))
    cpu = _CpuForm(traced_fp32, "float32", ["traced", "frozen"], [_OnnxRecipe("fp32", model, None)])
    if spec.quantization == "int8":
        cpu = _int8_form(spec, model, samples, figures, progress)

    variants = {"cpu": _save_variant(cpu.module, out / "cpu.pt", out, cpu.dtype, cpu.notes)}
    backends, serving = _cpu_backends(spec, samples, cpu.module, cpu.exports, tok, out, figures, variants, progress)
    files = _check_files(spec, backends, figures, serving, tok, tok_path, sentences, samples, out)
    accelerated = _build_accelerated(spec, model, samples, tok, sentences[:4], out, figures, accelerator, progress)
    if accelerated is not None:
        variants["cuda"] = accelerated

    return built_entry(
        spec,
        t0,
        figures,
        variants=variants,
        inputs=_INPUTS,
        outputs=_OUTPUTS[spec.task],
        labels=labels,
        preprocessing={"max_length": spec.max_length, "pad_id": pad_id, **extra},
        files=files,
        options=dict(spec.options),
        backends=backends,
    )


def _trace_fp32(
    spec: ModelSpec, model: nn.Module, batches: Sequence[tuple[torch.Tensor, ...]], progress: Progress
) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """The fp32 model traced and frozen; it must match eager and answer a batch as it answers each sentence alone.

    Returns the trace and the build's figures so far."""
    traced = artifact_backend.trace_and_freeze(model, batches[-1])
    figures: dict[str, Any] = {
        "traced_vs_eager_fp32_max_abs": verify.max_abs_diff(model, traced, batches),
        "batch_vs_single_fp32_max_abs": verify.batch_vs_single(traced, batches[-1]),
        "batch_sizes": [b[0].shape[0] for b in batches],
        "seq_lengths": [b[0].shape[1] for b in batches],
        "tolerance": TRACE_TOLERANCE,
    }
    for key in ("traced_vs_eager_fp32_max_abs", "batch_vs_single_fp32_max_abs"):
        if figures[key] > TRACE_TOLERANCE:
            raise BuildError(f"model {spec.name}: {key} = {figures[key]:.2e} exceeds {TRACE_TOLERANCE:.0e}")
    progress(f"traced fp32 (max abs diff {figures['traced_vs_eager_fp32_max_abs']:.1e})")
    return traced, figures


@dataclass
class _CpuForm:
    """The CPU TorchScript variant (module, dtype, notes) and the recipes ONNX Runtime's candidate tries in turn."""

    module: torch.jit.ScriptModule
    dtype: str
    notes: list[str]
    exports: list[_OnnxRecipe]


def _int8_form(
    spec: ModelSpec, model: nn.Module, samples: _Samples, figures: dict[str, Any], progress: Progress
) -> _CpuForm:
    """Smooth, quantize under the int8 guard, trace and verify against fp32 (a miss is a BuildError)."""

    def fid(m: nn.Module, desc: str = "int8 guard: fidelity") -> dict[str, float]:
        return _fidelity(spec, samples.reference, _run(m, samples.fidelity_batches, desc), samples.fid_mask)

    damage = _damage_probe(spec, model, samples.fidelity_batches[:2])  # 64 sentences: runs once per Linear layer
    to_quantize, calibration = model, samples.fidelity_batches[-_CALIBRATION_BATCHES:]
    if spec.smooth_alpha > 0:  # fp32-identical rewrite that makes int8 far more faithful
        to_quantize = smooth_linear_inputs(model, calibration, spec.smooth_alpha, skip=spec.keep_fp32)
        figures["smoothing"] = {
            "alpha": spec.smooth_alpha,
            "calibration_sentences": sum(b[0].shape[0] for b in calibration),
        }
    guarded = guard_int8(
        to_quantize,
        spec.keep_fp32,
        passes=lambda m: not _misses(spec, fid(m)),
        damage=damage,
        auto=spec.auto_keep_fp32,
        progress=progress,
    )
    traced_int8 = artifact_backend.trace_and_freeze(guarded.model, samples.batches[-1])
    int8_figures = fid(traced_int8, "verify: int8 vs fp32")
    figures["int8_vs_fp32"] = int8_figures
    figures["int8_traced_vs_eager_max_abs"] = verify.max_abs_diff(guarded.model, traced_int8, samples.batches)
    figures["int8_samples"] = len(samples.reference)  # the fidelity batches hold every sample sentence
    missed = _misses(spec, int8_figures)
    if missed:
        raise BuildError(f"model {spec.name}: int8 misses its fidelity target: {'; '.join(missed)}")
    exports = _int8_recipes(spec, model, to_quantize, guarded, calibration)
    notes = ["traced", "frozen"]
    notes += [f"int8 Linear layers: {len(guarded.quantized)}", f"fp32 Linear layers kept: {len(guarded.kept_fp32)}"]
    figures["kept_fp32"] = guarded.kept_fp32
    if guarded.sensitivity:
        figures["layer_sensitivity"] = {k: round(v, 6) for k, v in guarded.sensitivity.items()}
    progress(f"int8 {int8_figures} (kept fp32: {len(guarded.kept_fp32)})")
    return _CpuForm(traced_int8, "int8-dynamic", notes, exports)


def _damage_probe(
    spec: ModelSpec, model: nn.Module, probe: Sequence[tuple[torch.Tensor, ...]]
) -> Callable[[nn.Module], float]:
    """How far a candidate's answers on ``probe`` fall from fp32 (0: none): the int8 guard's ranking of layers."""
    probe_ref, probe_mask = _run(model, probe), _padded_mask(probe)

    def damage(m: nn.Module) -> float:
        f = _fidelity(spec, probe_ref, _run(m, probe), probe_mask)
        return 1 - f["mean_cosine"] if "mean_cosine" in f else 1 - f["top1_agreement"] + f["max_prob_diff"]

    return damage


def _int8_recipes(
    spec: ModelSpec,
    model: nn.Module,
    to_quantize: nn.Module,
    guarded: GuardResult,
    calibration: Sequence[tuple[torch.Tensor, ...]],
) -> list[_OnnxRecipe]:
    """What ONNX Runtime's candidate tries, in order: every Linear int8 with lean smoothing (when smoothing or
    kept layers apply), its own sensitive-layer fallbacks, then the TorchScript int8 recipe."""
    exports = [
        *_sensitive_layer_recipes(to_quantize, guarded.sensitivity, len(guarded.kept_fp32), spec.keep_fp32),
        _OnnxRecipe("the TorchScript int8 recipe", to_quantize, guarded.kept_fp32),
    ]
    if guarded.kept_fp32 or spec.smooth_alpha > 0:
        lean = smooth_attention(model, calibration, spec.smooth_alpha) if spec.smooth_alpha > 0 else model
        exports.insert(0, _OnnxRecipe(_LEAN_RECIPE, lean, []))
    return exports


def _check_files(
    spec: ModelSpec,
    backends: dict[str, Any],
    figures: dict[str, Any],
    serving: Callable[..., Any],
    tok: TextTokenizer,
    tok_path: Path,
    sentences: list[str],
    samples: _Samples,
    out: Path,
) -> dict[str, FileRef]:
    """tokenizer.json, `edge-mm check`'s reference sample through the serving variant, and (int8) the start-up
    fidelity gate's sample."""
    serving_variant = (
        figures.get("onnxruntime", {}).get("served_on_build_cpu", onnx_backend.ORT_VARIANT)
        if backends["serves"] == "onnxruntime"
        else "cpu"
    )
    reference_file = _write_reference(serving, tok, sentences[:4], out / "reference.json", serving_variant)
    files = {"tokenizer": FileRef("tokenizer.json", sha256_file(tok_path)), "reference": reference_file}
    if spec.quantization == "int8":
        files[fidelity_gate.FILE_KEY] = _write_fidelity_samples(spec, sentences, samples, out / "fidelity.json")
    return files


# Smoothing and constant activation scales are calibrated on the last batches of the build's sentences (128).
_CALIBRATION_BATCHES = 4

# ONNX Runtime quantizes activations to uint8 with a zero point, which is more faithful than
# TorchScript's int8, so its candidate first tries every layer in int8 with smoothing that costs
# fewer graph nodes (build/smoothing.py smooth_attention); the TorchScript recipe is the fallback.
_LEAN_RECIPE = "attention-shared smoothing, every Linear int8"


@dataclass
class _OnnxRecipe:
    """One fp32 model the ONNX Runtime candidate may export, and its fp32-kept layers (None: fp32 graph)."""

    name: str
    module: nn.Module
    kept: list[str] | None


def _sensitive_layer_recipes(
    module: nn.Module, sensitivity: dict[str, float], torchscript_kept: int, pinned: Sequence[str]
) -> list[_OnnxRecipe]:
    """ONNX Runtime's own sensitive-layer fallback: the 1, 2, 4, ... layers the int8 guard measured as most
    damaging kept in fp32, fewer than TorchScript needed (row-wise int8 is more faithful, so fewer may do).

    Empty when the guard measured nothing (its pinned ``keep_fp32`` met the targets)."""
    ranked = sorted(sensitivity, key=sensitivity.__getitem__, reverse=True)
    recipes, k = [], 1
    while ranked and k < torchscript_kept:
        recipes.append(_OnnxRecipe(f"{k} most sensitive Linear layers fp32", module, [*pinned, *ranked[:k]]))
        k *= 2
    return recipes


@dataclass
class _Samples:
    """What one build's checks run on: verify batches (1, 3, 8), fidelity batches, their mask, fp32 outputs."""

    batches: Sequence[tuple[torch.Tensor, ...]]
    fidelity_batches: Sequence[tuple[torch.Tensor, ...]]
    fid_mask: torch.Tensor
    reference: torch.Tensor  # the fp32 eager outputs over fidelity_batches


def _cpu_backends(
    spec: ModelSpec,
    samples: _Samples,
    torchscript: torch.jit.ScriptModule,
    exports: list[_OnnxRecipe],
    tok: TextTokenizer,
    out: Path,
    figures: dict[str, Any],
    variants: dict[str, Variant],
    progress: Progress,
) -> tuple[dict[str, Any], Callable[..., Any]]:
    """Build the ONNX Runtime candidate (unless the setting is torchscript), time both, choose.

    ``exports``: the recipes the ONNX Runtime candidate tries in turn (the first that passes serves).
    Adds the ONNX variant to ``variants`` when it passes; returns (the manifest's backends record,
    the serving forward).
    """
    candidates = {"torchscript": onnx_backend.Candidate("cpu", True, [], figures.get("int8_vs_fp32", {}))}
    timing_inputs = latency_inputs(tok, sample_sentences())
    runs: dict[str, Any] = {"torchscript": (torchscript, timing_inputs)}
    threads = onnx_backend.build_threads()
    if spec.artifact_backend != "torchscript":
        ort = _onnx_candidate(spec, samples, exports, out / "cpu.onnx", threads)
        candidates["onnxruntime"] = ort.candidate
        figures["onnxruntime"] = {**ort.figures, "vs_fp32": ort.candidate.fidelity, "misses": ort.candidate.misses}
        if ort.variant is not None:
            variants[onnx_backend.ORT_VARIANT] = ort.variant
            runs["onnxruntime"] = (ort.forward, timing_inputs)
        variants.update(ort.extra)
        refused = f" refused: {'; '.join(ort.candidate.misses)}" if ort.candidate.misses else ""
        progress(f"onnxruntime {ort.candidate.fidelity}{refused}")
    try:
        backends = onnx_backend.decide(spec.artifact_backend, candidates, runs, threads, _LATENCY_ROUNDS)
    except ValueError as exc:
        raise BuildError(f"model {spec.name}: {exc}") from None
    progress(f"serves {backends['serves']}: {backends['reason']}")
    return backends, runs[backends["serves"]][0]


def _onnx_candidate(
    spec: ModelSpec, samples: _Samples, exports: list[_OnnxRecipe], path: Path, threads: int
) -> onnx_backend.OnnxBuild:
    """Export, quantize and check each recipe with the same tolerances and gates as TorchScript; the first that
    passes and ships a form for x86 without VNNI too (``onnx_backend.serves_every_x86``), else the first that
    passes (built again), else the last.

    A recipe that misses is recorded (``figures["tried"]``), with why a passing one was not kept.
    """

    def fidelity(f: Callable[..., torch.Tensor]) -> tuple[dict[str, Any], list[str]]:
        test = _run(f, samples.fidelity_batches, "verify: onnxruntime vs fp32")
        figs = _fidelity(spec, samples.reference, test, samples.fid_mask)
        return figs, _misses(spec, figs)

    # the sentences smoothing is calibrated on also measure the activations given constant scales
    calibration = [
        {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        for ids, mask in samples.fidelity_batches[-_CALIBRATION_BATCHES:]
    ]

    def attempt(n: int, strict: bool = False) -> onnx_backend.OnnxBuild:
        return _build_recipe(spec, samples, exports[n], path, threads, fidelity, calibration, strict)

    tried: dict[int, str] = {}  # recipe index -> why it was not kept
    first_passing: int | None = None
    chosen: int | None = None
    for n, recipe in enumerate(exports):
        # artifact_backend = "onnxruntime" fails the build only when no recipe passed here
        build = attempt(n, strict=n == len(exports) - 1 and first_passing is None)
        if not build.candidate.passes:
            tried[n] = f"{recipe.name}: {'; '.join(build.candidate.misses)} {build.candidate.fidelity}"
        elif onnx_backend.serves_every_x86(build.figures):
            chosen = n
            break
        else:
            tried[n] = f"{recipe.name}: passes here, but {onnx_backend.why_not_every_x86(build.figures)}"
            first_passing = n if first_passing is None else first_passing
    if chosen is None:  # no recipe holds everywhere: the first that passes here, else the last one's result
        chosen = len(exports) - 1 if first_passing is None else first_passing
        if first_passing is not None:
            if chosen != len(exports) - 1:  # a later recipe's files replaced it
                build = attempt(chosen)
            build.figures["every_x86"] = f"no recipe did: {onnx_backend.why_not_every_x86(build.figures)}"
    build.figures.update({"recipe": exports[chosen].name, "tried": [t for i, t in tried.items() if i != chosen]})
    return build


def _build_recipe(
    spec: ModelSpec,
    samples: _Samples,
    recipe: _OnnxRecipe,
    path: Path,
    threads: int,
    fidelity: Callable[..., tuple[dict[str, Any], list[str]]],
    calibration: list[dict[str, Any]],
    strict: bool,
) -> onnx_backend.OnnxBuild:
    module = recipe.module

    def check_fp32(f: Callable[..., torch.Tensor]) -> tuple[dict[str, Any], list[str]]:
        figs = {
            "exported_vs_eager_fp32_max_abs": verify.max_abs_diff(module, f, samples.batches),
            "batch_vs_single_fp32_max_abs": verify.batch_vs_single(f, samples.batches[-1]),
        }
        return figs, [f"{k} {v:.2e} exceeds {TRACE_TOLERANCE:.0e}" for k, v in figs.items() if v > TRACE_TOLERANCE]

    return onnx_backend.build_candidate(
        module,
        samples.batches[-1],
        path,
        (["input_ids", "attention_mask"], [o["name"] for o in _OUTPUTS[spec.task]]),
        {**_INPUT_AXES, **_OUTPUT_AXES[spec.task]},
        keep_fp32=recipe.kept,
        check_fp32=check_fp32,
        fidelity=fidelity,
        threads=threads,
        strict=spec.artifact_backend == "onnxruntime" and strict,
        calibration=calibration,
    )


def latency_inputs(tok: TextTokenizer, sentences: list[str]) -> dict[str, tuple[torch.Tensor, ...]]:
    """Batch 1 and batch 8 of sample sentences of 21-32 tokens (the issue's benchmark sentence length)."""
    lengths = [len(e.ids) for e in tok.encode(sentences).encodings]
    picked = [s for s, n in zip(sentences, lengths, strict=True) if 21 <= n <= 32] or sentences
    one, eight = tok.encode(picked[:1]), tok.encode((picked * 8)[:8])
    return {"batch_1": (one.input_ids, one.attention_mask), "batch_8": (eight.input_ids, eight.attention_mask)}


FIDELITY_SAMPLES = 64  # sentences the start-up gate replays (two of the build's fidelity batches)


def _write_fidelity_samples(spec: ModelSpec, sentences: list[str], samples: _Samples, path: Path) -> FileRef:
    """The start-up gate's sample (runtime/fidelity_gate.py): sentences, their fp32 outputs, this model's gates."""
    n = min(FIDELITY_SAMPLES, len(sentences))
    ref = samples.reference[:n]
    if ref.dim() == 3:  # token logits: each sentence's own tokens, as the runner answers
        lengths = samples.fid_mask[:n].sum(1).tolist()
        fp32 = [ref[i, : int(lengths[i])].tolist() for i in range(n)]
    else:
        fp32 = ref.tolist()
    if spec.task == "embeddings":
        metric, gates = "cosine", {"min_mean_cosine": spec.min_mean_cosine, "min_min_cosine": spec.min_min_cosine}
    else:
        metric = "classifier"
        gates = {"min_top1_agreement": spec.min_top1_agreement, "max_prob_diff": spec.max_prob_diff}
    fidelity_gate.Samples(sentences[:n], fp32, metric, gates).write(path)
    return FileRef(path.name, sha256_file(path))


def _write_reference(
    module: Callable[..., Any],
    tok: TextTokenizer,
    texts: list[str],
    path: Path,
    variant: str,
    device: torch.device | str = "cpu",
    tolerance: float | None = None,
) -> FileRef:
    """Sample inputs and ``variant``'s outputs (run on ``device``), for `edge-mm check`; ``tolerance``:
    the largest abs difference the check allows for this variant (None: the runtime's default)."""
    enc = tok.encode(texts)
    with torch.inference_mode():
        out = torch.as_tensor(module(enc.input_ids.to(device), enc.attention_mask.to(device))).float().cpu()
    outputs = [(out[i, : enc.lengths[i]] if out.dim() == 3 else out[i]).tolist() for i in range(len(texts))]
    record: dict[str, Any] = {"inputs": texts, "outputs": outputs, "variant": variant}
    if tolerance is not None:
        record["tolerance"] = tolerance
    path.write_text(json.dumps(record))
    return FileRef(path.name, sha256_file(path))


def _save_variant(module: torch.jit.ScriptModule, path: Path, out: Path, dtype: str, notes: list[str]) -> Variant:
    artifact_backend.save(module, path)
    return Variant(files={"model": FileRef(path.name, sha256_file(path))}, dtype=dtype, notes=notes)


def _build_accelerated(
    spec: ModelSpec,
    model: nn.Module,
    samples: _Samples,
    tok: TextTokenizer,
    texts: list[str],
    out: Path,
    figures: dict[str, Any],
    accelerator: str | None,
    progress: Progress,
) -> Variant | None:
    """Reduced-precision trace on the accelerator (mask code bakes in the trace device, so trace where it runs).

    Compared with ``samples.reference`` (fp32 eager) against the same targets as int8; a miss is
    refused: None, and ``figures[NO_CUDA_KEY]`` says why (as it does when there is no accelerator).
    The variant carries its own reference sample (``texts`` through it), so `edge-mm check`
    compares it with itself, not with the CPU form.
    """
    accel = resolve_accelerator(accelerator)
    if accel is None:
        figures[NO_CUDA_KEY] = NO_GPU
        progress("no CUDA on this machine: CUDA variant skipped (build on a CUDA machine to add it)")
        return None
    device_model = copy.deepcopy(model).to(device=accel.device, dtype=accel.dtype).eval()  # leaves fp32 intact
    on_device = [tuple(t.to(accel.device) for t in b) for b in samples.batches]
    traced = artifact_backend.trace_and_freeze(device_model, on_device[-1])
    test = _run(traced, [tuple(t.to(accel.device) for t in b) for b in samples.fidelity_batches]).float().cpu()
    figures[accel.figure_key] = _fidelity(spec, samples.reference, test, samples.fid_mask)
    progress(f"{accel.device.type} {accel.dtype_name} {figures[accel.figure_key]}")
    missed = _misses(spec, figures[accel.figure_key])
    if missed:
        figures[NO_CUDA_KEY] = accel.refusal(missed)
        progress(f"CUDA variant refused: {figures[NO_CUDA_KEY]}")
        return None
    variant = _save_variant(traced, out / "cuda.pt", out, accel.dtype_name, [*accel.notes, "frozen"])
    variant.files["reference"] = _write_reference(
        traced, tok, texts, out / "reference-cuda.json", "cuda", accel.device, accel.check_tolerance
    )
    return variant
