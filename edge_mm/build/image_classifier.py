"""Build image classifiers: EfficientNet-Lite0 (shipped weights), torchvision architectures with
a local weights file, and HF image-classification checkpoints.

Every model is wrapped as ``(N, 3, H, W) float32 -> (logits (N, C), features (N, D))``
where features are the input of the final Linear layer (pooled, before the head), so
one artifact serves classification and image embeddings. CPU artifact: fp32
trace + freeze in channels-last (fastest measured for conv nets, bench/experiments/README.md: efficientnet_cpu_variants);
dynamic int8 only where Linear layers hold most of the weights (ViT-style), under the
same top-1 guard as text classifiers. For the other models (conv nets) ``quantization = "int8"``
makes the ONNX Runtime candidate a static int8 graph (build/onnx_static.py), gated against fp32
on held-out photos; a graph that misses leaves the fp32 ONNX candidate in its place.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_mm.build import artifact_backend, onnx_backend, onnx_static, verify
from edge_mm.build.accelerator import NO_GPU, Accelerator, resolve_accelerator
from edge_mm.build.errors import BuildError
from edge_mm.build.imagenet import load_imagenet_labels
from edge_mm.build.manifest_entry import (
    SAMPLE_NAMES,
    built_entry,
    max_abs,
    sample_images,
    save_variant,
    write_reference,
)
from edge_mm.build.progress import Progress
from edge_mm.build.quantize import guard_int8
from edge_mm.config import ModelSpec
from edge_mm.errors import ConfigError
from edge_mm.manifest import NO_CUDA_KEY, FileRef, ModelEntry, Variant, sha256_file
from edge_mm.media.image_preprocess import (
    EFFICIENTNET_LITE0_PREPROCESS,
    ImagePreprocess,
    SquashPreprocess,
    input_size,
    preprocess_to_dict,
)
from edge_mm.runtime import fidelity_gate
from edge_mm.runtime.probes import image_from_base64, png_base64, probe_pixels

CL = torch.channels_last
TRACE_TOLERANCE = 2e-3  # fp32 traced (conv+BN folded) vs eager, max abs logit difference
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INT8_MIN_LINEAR_SHARE = 0.5  # quantize Linear layers only when they hold at least this share of weights
LATENCY_ROUNDS = {"batch_1": 12, "batch_8": 4}  # timed forwards per backend (medians)


class _Capture(nn.Module):
    """Wraps a Linear layer and keeps its last input (the pooled features)."""

    def __init__(self, linear: nn.Module) -> None:
        super().__init__()
        self.linear = linear
        self.last: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last = x
        return self.linear(x)


class LogitsAndPooled(nn.Module):
    """Any classifier -> (logits, input of its last Linear layer)."""

    def __init__(self, model: nn.Module, hf: bool) -> None:
        super().__init__()
        names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not names:
            raise ConfigError("classifier has no Linear head to take image embeddings from")
        parent_name, _, attr = names[-1].rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        capture = _Capture(getattr(parent, attr))
        setattr(parent, attr, capture)
        self.model = model
        self._capture = [capture]  # a plain list: the module stays registered under model only
        self.hf = hf

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(pixel_values=x, return_dict=False)[0] if self.hf else self.model(x)
        features = self._capture[0].last
        assert features is not None
        if features.dim() > 2:
            features = features.flatten(1)
        return logits, features


def _efficientnet(source: Path) -> tuple[nn.Module, list[str], ImagePreprocess, str]:
    from edge_mm.build.efficientnet_lite import LogitsAndFeatures, load_efficientnet_lite0

    model = load_efficientnet_lite0(source)
    return LogitsAndFeatures(model).eval(), load_imagenet_labels(), EFFICIENTNET_LITE0_PREPROCESS, "efficientnet_lite0"


def _torchvision(spec: ModelSpec, source: Path) -> tuple[nn.Module, list[str] | None, ImagePreprocess, str]:
    import torchvision

    arch = str(spec.options["arch"])
    if arch not in torchvision.models.list_models(torchvision.models):
        raise ConfigError(f"model {spec.name}: options.arch {arch!r} is not a torchvision classification model")
    state = torch.load(source, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    heads = [k for k in state if k.endswith(".weight") and state[k].dim() == 2]
    classes = int(state[heads[-1]].shape[0]) if heads else 1000
    model = torchvision.models.get_model(arch, weights=None, num_classes=classes)
    model.load_state_dict(state, strict=True)
    o = spec.options
    pre = ImagePreprocess(
        resize_short=int(o.get("resize_short", 256)),
        crop=int(o.get("crop", 224)),
        mean=tuple(o.get("mean", IMAGENET_MEAN)),
        std=tuple(o.get("std", IMAGENET_STD)),
        interpolation=str(o.get("interpolation", "bilinear")),  # type: ignore[arg-type]
    )
    labels = load_imagenet_labels() if classes == 1000 else None
    return LogitsAndPooled(model.eval(), hf=False).eval(), labels, pre, f"torchvision {arch}"


_PIL_RESAMPLE = {2: "bilinear", 3: "bicubic"}


def hf_preprocess(folder: Path) -> ImagePreprocess | SquashPreprocess:
    """The checkpoint's preprocessor_config.json as runtime preprocessing (Pillow path)."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        raise ConfigError(f"{folder}: no preprocessor_config.json; save the image processor with the model")
    cfg = json.loads(path.read_text())
    mean = tuple(cfg.get("image_mean", IMAGENET_MEAN)) if cfg.get("do_normalize", True) else (0.0, 0.0, 0.0)
    std = tuple(cfg.get("image_std", IMAGENET_STD)) if cfg.get("do_normalize", True) else (1.0, 1.0, 1.0)
    interpolation = _PIL_RESAMPLE.get(int(cfg.get("resample", 2)), "bilinear")
    size = cfg.get("size", {})
    if isinstance(size, int):
        size = {"shortest_edge": size}
    if "shortest_edge" in size:
        crop = cfg.get("crop_size", size["shortest_edge"]) if cfg.get("do_center_crop", True) else size["shortest_edge"]
        crop = crop["height"] if isinstance(crop, dict) else int(crop)
        return ImagePreprocess(int(size["shortest_edge"]), int(crop), mean, std, interpolation)  # type: ignore[arg-type]
    if "height" in size and "width" in size:
        return SquashPreprocess(int(size["height"]), int(size["width"]), mean, std, interpolation)
    raise ConfigError(f"{path}: size {size!r} is not supported (need shortest_edge or height/width)")


def _hf(source: Path) -> tuple[nn.Module, list[str], ImagePreprocess | SquashPreprocess, str]:
    import transformers

    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForImageClassification.from_pretrained(source, attn_implementation="eager").eval()
    id2label = model.config.id2label
    labels = [str(id2label[i]) for i in range(len(id2label))]
    return LogitsAndPooled(model, hf=True).eval(), labels, hf_preprocess(source), f"transformers {type(model).__name__}"


def load_classifier(spec: ModelSpec, source: Path) -> tuple[nn.Module, list[str], Any, str]:
    """(wrapped eval model, labels, preprocessing, kind) for any supported classifier source."""
    arch = spec.options.get("arch")
    labels: list[str] | None  # None: a torchvision checkpoint without a label list
    if source.is_dir():
        model, labels, pre, kind = _hf(source)
    elif arch in (None, "efficientnet_lite0"):
        model, labels, pre, kind = _efficientnet(source)
    else:
        model, labels, pre, kind = _torchvision(spec, source)
    if "labels" in spec.options:
        labels = [str(x) for x in spec.options["labels"]]
    if labels is None:
        n = int(model(torch.zeros(1, 3, *input_size(pre)))[0].shape[-1])
        labels = [f"class_{i}" for i in range(n)]
    return model, labels, pre, kind


def linear_share(model: nn.Module) -> float:
    """Fraction of the weights that sit in Linear layers."""
    total = sum(p.numel() for p in model.parameters())
    linear = sum(p.numel() for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters())
    return linear / max(total, 1)


def build_image_classifier(
    spec: ModelSpec, source: Path, out: Path, progress: Progress, *, accelerator: str | None = "cuda"
) -> ModelEntry:
    """``accelerator``: where the ``cuda`` variant is traced (see build/accelerator.py); None skips it."""
    t0 = time.perf_counter()
    model, labels, pre, kind = load_classifier(spec, source)
    model = model.to(memory_format=CL)
    x = pre(sample_images())  # (4, 3, H, W) channels-last: real photos
    progress(f"loaded {kind} ({len(labels)} classes, {time.perf_counter() - t0:.1f} s)")
    traced, eager, figures = _trace_fp32(spec, model, x, labels, progress)
    cpu_module, dtype, kept, notes = _cpu_form(spec, model, traced, x, eager, figures, progress)
    variants = {"cpu": save_variant(cpu_module, out / "cpu.pt", dtype, notes)}
    backends, serving = _cpu_backends(spec, (model, kept, pre), cpu_module, x, eager, out, figures, variants, progress)
    accelerated = _cuda_variant(spec, model, pre, x, eager, out, figures, accelerator, progress)
    if accelerated is not None:
        variants["cuda"] = accelerated
    files = {"reference": _reference(serving, pre, out, variant=_serving_variant(backends, figures))}
    if spec.quantization == "int8":
        files[fidelity_gate.FILE_KEY] = _fidelity_samples(spec, model, pre, len(labels), out / "fidelity.json")
    h, w = input_size(pre)
    return built_entry(
        spec,
        t0,
        figures,
        variants=variants,
        inputs=[{"name": "pixel_values", "dtype": "float32", "shape": ["batch", 3, h, w], "layout": "channels_last"}],
        outputs=[
            {"name": "logits", "dtype": "float32", "shape": ["batch", len(labels)]},
            {"name": "features", "dtype": "float32", "shape": ["batch", int(eager[1].shape[-1])]},
        ],
        labels=labels,
        preprocessing={**preprocess_to_dict(pre), "kind": kind},
        files=files,
        options=dict(spec.options),
        backends=backends,
    )


def _trace_fp32(
    spec: ModelSpec, model: nn.Module, x: torch.Tensor, labels: list[str], progress: Progress
) -> tuple[torch.jit.ScriptModule, tuple[torch.Tensor, ...], dict[str, Any]]:
    """The fp32 model traced and frozen; it must match eager and answer a batch as it answers each photo alone.

    Returns the trace, the eager outputs on ``x`` and the build's figures so far."""
    with torch.inference_mode():
        eager = model(x)
    traced = artifact_backend.trace_and_freeze(model, (x,))
    with torch.inference_mode():
        got = traced(x)
        single = [traced(x[i : i + 1]) for i in range(len(x))]
    figures: dict[str, Any] = {
        "traced_vs_eager_fp32_max_abs": max_abs(got, eager),
        "batch_vs_single_fp32_max_abs": max(max_abs(s, tuple(t[i : i + 1] for t in got)) for i, s in enumerate(single)),
        "top1_traced_vs_eager": verify.classifier_figures(eager[0], got[0])["top1_agreement"],
        "tolerance": TRACE_TOLERANCE,
        "samples": {n: _top(got[0][i], labels, 3) for i, n in enumerate(SAMPLE_NAMES)},
        "linear_weight_share": round(linear_share(model), 3),
    }
    for key in ("traced_vs_eager_fp32_max_abs", "batch_vs_single_fp32_max_abs"):
        if figures[key] > TRACE_TOLERANCE:
            raise BuildError(f"model {spec.name}: {key} = {figures[key]:.2e} exceeds {TRACE_TOLERANCE:.0e}")
    progress(f"traced fp32 channels-last (max abs diff {figures['traced_vs_eager_fp32_max_abs']:.1e})")
    return traced, eager, figures


def _cpu_form(
    spec: ModelSpec,
    model: nn.Module,
    traced: torch.jit.ScriptModule,
    x: torch.Tensor,
    eager: tuple[torch.Tensor, ...],
    figures: dict[str, Any],
    progress: Progress,
) -> tuple[torch.jit.ScriptModule, str, list[str] | None, list[str]]:
    """The CPU TorchScript variant: int8 dynamic Linear layers where they hold enough of the weights, else the
    fp32 trace. Returns (module, dtype, the layers int8 kept in fp32 or None, notes)."""
    notes = ["traced", "frozen (conv+BN folded)", "channels_last"]
    if spec.quantization == "int8" and figures["linear_weight_share"] >= INT8_MIN_LINEAR_SHARE:
        cpu_module, kept = _int8(spec, model, x, eager[0], figures, progress)
        return cpu_module, "int8-dynamic", kept, [*notes, "int8 dynamic Linear layers"]
    if spec.quantization == "int8":
        notes.append(
            f"int8 not applied: Linear layers hold {figures['linear_weight_share']:.0%} of the weights; "
            "dynamic int8 of a conv net's head bought nothing (measured, bench/experiments/README.md: efficientnet_cpu_variants)"
        )
    return traced, "float32", None, notes


def _cuda_variant(
    spec: ModelSpec,
    model: nn.Module,
    pre: Any,
    x: torch.Tensor,
    eager: tuple[torch.Tensor, ...],
    out: Path,
    figures: dict[str, Any],
    accelerator: str | None,
    progress: Progress,
) -> Variant | None:
    """The accelerator's variant, or None with the reason in ``figures[NO_CUDA_KEY]`` (no accelerator, or refused)."""
    accel = resolve_accelerator(accelerator)
    if accel is None:
        figures[NO_CUDA_KEY] = NO_GPU
        progress("no CUDA on this machine: CUDA variant skipped")
        return None
    accelerated = _accelerated_variant(spec, model, pre, x, eager, out, figures, accel)
    if accelerated is None:
        progress(f"CUDA variant refused: {figures[NO_CUDA_KEY]}")
    return accelerated


def _fidelity_samples(spec: ModelSpec, model: nn.Module, pre: Any, labels: int, path: Path) -> FileRef:
    """The start-up gate's sample (runtime/fidelity_gate.py): the build gate's held-out photos (PNG: the same pixels) and fp32 logits."""
    inputs = [png_base64(np.asarray(image)) for image in onnx_static.heldout_images()]
    with torch.inference_mode():
        logits = model(pre([image_from_base64(s) for s in inputs]))[0].float()
    gates = {"min_top1_agreement": spec.min_top1_agreement, "max_prob_diff": spec.max_prob_diff}
    fidelity_gate.Samples(inputs, logits.tolist(), "classifier", gates, labels).write(path)
    return FileRef(path.name, sha256_file(path))


def _cpu_backends(
    spec: ModelSpec,
    export: tuple[nn.Module, list[str] | None, Any],
    torchscript: torch.jit.ScriptModule,
    x: torch.Tensor,
    eager: tuple[torch.Tensor, ...],
    out: Path,
    figures: dict[str, Any],
    variants: dict[str, Variant],
    progress: Progress,
) -> tuple[dict[str, Any], Any]:
    """The ONNX Runtime candidate (NCHW, same weights; int8 with the same kept layers, or static int8
    where no Linear layer was quantized), timed against TorchScript at batch 1 and 8; returns
    (the manifest's backends record, the serving forward). ``export``: (fp32 model, kept layers, preprocessing)."""
    one, eight = x[:1], torch.cat([x, x])  # the model's input size (224 x 224 for EfficientNet-Lite0)
    cl = {"batch_1": (one.contiguous(memory_format=CL),), "batch_8": (eight.contiguous(memory_format=CL),)}
    nchw = {"batch_1": (one.contiguous(),), "batch_8": (eight.contiguous(),)}
    candidates = {"torchscript": onnx_backend.Candidate("cpu", True, [], figures.get("int8_vs_fp32", {}))}
    runs: dict[str, Any] = {"torchscript": (torchscript, cl)}
    threads = onnx_backend.build_threads()
    static: dict[str, Any] = {}
    if spec.artifact_backend != "torchscript":
        ort, static = _onnx_candidate(spec, export, x, eager, out, threads, progress)
        candidates["onnxruntime"] = ort.candidate
        figures["onnxruntime"] = {**ort.figures, "vs_fp32": ort.candidate.fidelity, "misses": ort.candidate.misses}
        if static:
            figures["onnxruntime"]["int8_static"] = static
        if ort.variant is not None:
            variants[onnx_backend.ORT_VARIANT] = ort.variant
            runs["onnxruntime"] = (ort.forward, nchw)
        variants.update(ort.extra)
        refused = f" refused: {'; '.join(ort.candidate.misses)}" if ort.candidate.misses else ""
        progress(f"onnxruntime {ort.candidate.fidelity}{refused}")
    try:
        backends = onnx_backend.decide(spec.artifact_backend, candidates, runs, threads, LATENCY_ROUNDS)
    except ValueError as exc:
        raise BuildError(f"model {spec.name}: {exc}") from None
    if static:
        backends["int8_static"] = {k: static[k] for k in ("applied", "reason", "heldout_vs_fp32") if k in static}
    progress(f"serves {backends['serves']}: {backends['reason']}")
    return backends, runs[backends["serves"]][0]


def _onnx_candidate(
    spec: ModelSpec,
    export: tuple[nn.Module, list[str] | None, Any],
    x: torch.Tensor,
    eager: tuple[torch.Tensor, ...],
    out: Path,
    threads: int,
    progress: Progress,
) -> tuple[onnx_backend.OnnxBuild, dict[str, Any]]:
    """Export and check the ONNX Runtime candidate against eager with TorchScript's tolerances and gates; static
    int8 (build/onnx_static.py) where no Linear layer was quantized. Returns (the candidate, the static record)."""
    module, kept, pre = export

    def check_fp32(f: Any) -> tuple[dict[str, Any], list[str]]:
        got = f(x)
        single = [f(x[i : i + 1]) for i in range(len(x))]
        figs = {
            "exported_vs_eager_fp32_max_abs": max_abs(got, eager),
            "batch_vs_single_fp32_max_abs": max(
                max_abs(s, tuple(t[i : i + 1] for t in got)) for i, s in enumerate(single)
            ),
        }
        return figs, [f"{k} {v:.2e} exceeds {TRACE_TOLERANCE:.0e}" for k, v in figs.items() if v > TRACE_TOLERANCE]

    def fidelity(f: Any) -> tuple[dict[str, Any], list[str]]:
        figs = verify.classifier_figures(eager[0], f(x)[0])
        return figs, verify.classifier_misses(figs, spec.min_top1_agreement, spec.max_prob_diff)

    ort = onnx_backend.build_candidate(
        module,
        (x,),
        out / "cpu.onnx",
        (["pixel_values"], ["logits", "features"]),
        {"pixel_values": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}},
        keep_fp32=kept,
        check_fp32=check_fp32,
        fidelity=fidelity,
        threads=threads,
        strict=spec.artifact_backend == "onnxruntime",
    )
    if spec.quantization == "int8" and kept is None and ort.variant is not None:
        return onnx_static.image_candidate(spec, module, pre, ort, out, threads, progress)
    return ort, {}


def _top(logits: torch.Tensor, labels: list[str], k: int) -> list[str]:
    return [labels[i] for i in logits.float().softmax(-1).topk(k).indices.tolist()]


def _int8(
    spec: ModelSpec,
    model: nn.Module,
    x: torch.Tensor,
    ref_logits: torch.Tensor,
    figures: dict[str, Any],
    progress: Progress,
) -> tuple[torch.jit.ScriptModule, list[str]]:
    """The int8 trace and the Linear layers kept in fp32."""

    def figs(m: nn.Module) -> dict[str, float]:
        with torch.inference_mode():
            return verify.classifier_figures(ref_logits, m(x)[0])

    def passes(m: nn.Module) -> bool:
        return not verify.classifier_misses(figs(m), spec.min_top1_agreement, spec.max_prob_diff)

    def damage(m: nn.Module) -> float:
        f = figs(m)
        return 1 - f["top1_agreement"] + f["max_prob_diff"]

    guarded = guard_int8(
        model, spec.keep_fp32, passes=passes, damage=damage, auto=spec.auto_keep_fp32, progress=progress
    )
    traced = artifact_backend.trace_and_freeze(guarded.model, (x,))
    figures["int8_vs_fp32"] = figs(traced)
    figures["kept_fp32"] = guarded.kept_fp32
    if not passes(traced):
        raise BuildError(f"model {spec.name}: int8 misses its fidelity target: {figures['int8_vs_fp32']}")
    progress(f"int8 {figures['int8_vs_fp32']}")
    return traced, guarded.kept_fp32


def _accelerated_variant(
    spec: ModelSpec,
    model: nn.Module,
    pre: Any,
    x: torch.Tensor,
    eager: tuple[torch.Tensor, ...],
    out: Path,
    figures: dict[str, Any],
    accel: Accelerator,
) -> Variant | None:
    """Reduced-precision channels-last trace on the accelerator (fp16 on the GPU), with its own reference
    sample; None when it misses the model's fidelity targets (``figures[NO_CUDA_KEY]`` says why)."""
    import copy

    dev = copy.deepcopy(model).to(device=accel.device, dtype=accel.dtype).eval()
    xd = x.to(device=accel.device, dtype=accel.dtype).contiguous(memory_format=CL)
    traced = artifact_backend.trace_and_freeze(dev, (xd,))
    with torch.inference_mode():
        got = traced(xd)
    figures[accel.figure_key] = verify.classifier_figures(eager[0], got[0].float().cpu())
    missed = verify.classifier_misses(figures[accel.figure_key], spec.min_top1_agreement, spec.max_prob_diff)
    if missed:
        figures[NO_CUDA_KEY] = accel.refusal(missed)
        return None
    notes = [*accel.notes, "frozen", "channels_last", accel.short_dtype]
    variant = save_variant(traced, out / "cuda.pt", accel.dtype_name, notes)
    variant.files["reference"] = _reference(
        traced, pre, out, "reference-cuda.json", accel.device, accel.dtype, accel.check_tolerance
    )
    return variant


def _serving_variant(backends: dict[str, Any], figures: dict[str, Any]) -> str:
    """The variant whose forward the build serves with: TorchScript's ``cpu``, or ONNX Runtime's form for
    this CPU (the 7-bit static graph on x86 without VNNI, build/onnx_static.py)."""
    if backends["serves"] != "onnxruntime":
        return "cpu"
    static = figures.get("onnxruntime", {}).get("int8_static", {})
    return (
        str(static.get("served_on_build_cpu", onnx_backend.ORT_VARIANT))
        if static.get("applied")
        else onnx_backend.ORT_VARIANT
    )


def _reference(
    module: Any,
    pre: Any,
    out: Path,
    name: str = "reference.json",
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    tolerance: float | None = None,
    variant: str | None = None,
) -> FileRef:
    """Two probe images through ``module`` (on ``device``, in ``dtype``) for `edge-mm check`; ``variant``:
    the variant ``module`` is."""
    inputs = [png_base64(probe_pixels(90, 120, 1)), png_base64(probe_pixels(120, 90, 2))]
    x = pre([image_from_base64(s) for s in inputs]).to(device=device, dtype=dtype)
    with torch.inference_mode():
        logits, features = (torch.as_tensor(t).float().cpu() for t in module(x))
    outputs = [torch.cat([logits[i], features[i]]).tolist() for i in range(len(inputs))]
    return write_reference(out / name, inputs, outputs, tolerance, variant)
