"""Loading one model version: device and variant choice, the start-up fidelity gate, admission; what /info says.

load_registry (runtime/registry.py) loads every configured model with these at start-up; runtime/swap.py
loads a new version with them while serving.
"""

from __future__ import annotations

import functools
import gc
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge_mm import device as device_policy
from edge_mm.config import ModelSpec, Settings
from edge_mm.errors import ConfigError
from edge_mm.manifest import NO_CUDA_KEY, Manifest, ModelEntry, Variant
from edge_mm.runtime import cpu_features, fidelity_gate
from edge_mm.runtime.admission import Admission
from edge_mm.runtime.artifacts import serving_variant
from edge_mm.runtime.options import KindOptions, served_entry
from edge_mm.runtime.runner import BatchedRunner, Loader
from edge_mm.runtime.served import Served
from edge_mm.runtime.versions import Catalog, Version

log = logging.getLogger("edge_mm.registry")


def selected_versions(catalog: Catalog, spec: ModelSpec) -> list[Version]:
    """The versions of ``spec`` its ``version_policy`` serves; the flat manifest's (which raises the
    usual 'run edge-mm build' errors) when none is on disk."""
    numbers = catalog.selected(spec.name, spec.version_policy)
    if not numbers:
        return [Version(spec.name, 1, catalog.root, catalog.flat())]
    return [catalog.version(spec.name, n) for n in numbers]


def open_partners(served: Served, settings: Settings, entries: Mapping[str, ModelEntry]) -> None:
    """What a model needs beyond its own files: the entries of the models it is composed of (ConSE),
    its registered faces' store (face recognition)."""
    check_partners = getattr(served.runner, "check_partners", None)  # a model composed of others (ConSE)
    if check_partners is not None:
        check_partners(entries)  # the verified entries: nothing reads manifest.json twice
    open_store = getattr(served.runner, "open_store", None)  # face recognition's registered faces
    if open_store is not None:
        open_store(settings.path("runtime.faces_db"))


def planned_variant(entry: ModelEntry, device_variant: str, artifact_backend: str) -> tuple[str, str]:
    """(variant to load before the start-up fidelity gate, why its backend): the build's backend choice
    (artifacts.serving_variant), and on CPU the int8 form made for this CPU's kernels (fidelity_gate.path_variant)."""
    variant, reason = serving_variant(entry, device_variant, artifact_backend)
    if device_variant == "cpu":
        variant = fidelity_gate.path_variant(entry, variant, cpu_features.detect())
    return variant, reason


def load_served(
    spec: ModelSpec,
    version: Version,
    entry: ModelEntry,
    settings: Settings,
    loaders: Mapping[str, Loader],
    *,
    cuda: bool,
    concurrent: int,
) -> tuple[Served, dict[str, Any]]:
    """One model version loaded (through the start-up fidelity gate on CPU) with its admission gate, not
    warmed; with the device choice /info shows. ``entry``: its manifest entry with serve-time options."""
    root = version.root
    requested, setting = device_policy.requested_device(settings["runtime.device"], spec.device)
    try:
        choice = device_policy.resolve(
            requested, cuda, set(entry.variants), setting=setting, no_cuda_why=_no_cuda_why(entry)
        )
    except ConfigError as exc:
        raise ConfigError(f"model {spec.name!r}: {exc}") from None
    try:
        variant, backend_reason = planned_variant(entry, choice.variant, spec.artifact_backend)
    except ConfigError as exc:
        raise ConfigError(f"model {spec.name!r}: {exc}") from None
    load = functools.partial(loaders[entry.task], spec.name, entry, root, choice.device)
    gate: dict[str, Any] | None = None
    if choice.device == "cpu" and settings["runtime.fidelity_check"] and fidelity_gate.FILE_KEY in entry.files:
        runner, variant, gate = _load_verified(spec.name, load, entry, root, variant, spec.artifact_backend, settings)
    else:
        runner = load(variant, settings["runtime.max_batch"])
    backend = entry.variants[variant].backend
    log.info(
        "model %s version %d: device %s (%s); %s (%s)",
        spec.name,
        version.number,
        choice.device,
        choice.reason,
        backend,
        backend_reason,
    )
    in_flight = concurrent if choice.device == "cpu" else max(2, concurrent)
    if settings["runtime.micro_batching"] and isinstance(runner, BatchedRunner):
        runner.enable_batching(settings["runtime.max_batch_wait_ms"], workers=in_flight)
        in_flight *= settings["runtime.max_batch"]  # let enough requests reach the batcher to fill a batch
    admission = Admission(in_flight, settings["runtime.queue_size"], settings["runtime.request_timeout_s"])
    served = Served(
        spec.name, entry.task, runner, admission, choice.device, variant, entry, version=version.number, root=root
    )
    choice_info = {
        "device": choice.device,
        "variant": variant,
        "reason": choice.reason,
        "backend": backend,
        "backend_reason": backend_reason,
        **_provider(choice.device, entry.variants[variant]),
        **({"fidelity_check": gate} if gate is not None else {}),
    }
    return served, choice_info


def served_entry_for(
    spec: ModelSpec, manifest: Manifest, root: Path, loaders: Mapping[str, Loader], options: Mapping[str, KindOptions]
) -> ModelEntry:
    """The model's manifest entry with the options it serves with; ConfigError when it cannot serve."""
    entry = manifest.models.get(spec.name)
    if entry is None:
        raise ConfigError(f"model {spec.name!r} is in settings but not in {root}/manifest.json; run 'edge-mm build'")
    if entry.task != spec.task:
        raise ConfigError(f"model {spec.name!r}: settings say {spec.task}, artifacts hold {entry.task}; rebuild")
    if entry.task not in loaders or entry.task not in options:
        raise ConfigError(f"model {spec.name!r}: task {entry.task!r} cannot be served by this edge-mm version")
    return served_entry(spec, entry, options[entry.task])


def _load_verified(
    name: str,
    load: Callable[[str, int], Any],
    entry: ModelEntry,
    root: Any,
    picked: str,
    setting: str,
    settings: Settings,
) -> tuple[Any, str, dict[str, Any]]:
    """(runner, variant, record): the first variant of the fallback chain that meets the build's gates on this CPU.

    Raises ConfigError when none does (the server must not serve answers it cannot vouch for).
    """
    samples = fidelity_gate.Samples.read(entry.files[fidelity_gate.FILE_KEY].resolve(root))
    cpu = cpu_features.detect()
    tried: list[fidelity_gate.Verdict] = []
    for variant in fidelity_gate.fallback_chain(entry, picked, setting):
        try:
            runner = load(variant, settings["runtime.max_batch"])
            verdict = fidelity_gate.measure(samples, variant, runner.check_outputs)
        except ImportError as exc:  # a variant this bundle cannot run (TorchScript in the torch-free lite bundle)
            tried.append(fidelity_gate.Verdict(variant, False, error=f"{type(exc).__name__}: {exc}"[:300]))
            log.warning("model %s: variant %s could not run here: %s", name, variant, tried[-1].error)
            continue
        tried.append(verdict)
        if verdict.passes:
            record = {
                "cpu_path": cpu.path,
                "variant": variant,
                "samples": len(samples.inputs),
                "gates": samples.gates,
                "figures": verdict.figures,
                "reason": (
                    f"meets its gates on this CPU ({cpu.path})"
                    if variant == picked
                    else f"{picked} missed its gates on this CPU ({cpu.path}): {'; '.join(tried[0].misses or [str(tried[0].error)])}; "
                    f"{variant} serves instead"
                ),
                "tried": [asdict(v) for v in tried],
            }
            (log.info if variant == picked else log.warning)("model %s: %s", name, record["reason"])
            # A fresh load serves: the checked session's memory arena grew to the sample's batches
            # (measured: 244 MB over the five default models) and is freed with it.
            del runner
            gc.collect()
            return load(variant, settings["runtime.max_batch"]), variant, record
        log.warning("model %s: %s misses its gates on %s: %s", name, variant, cpu.path, "; ".join(verdict.misses))
    summary = "; ".join(f"{v.variant}: {v.error or '; '.join(v.misses)}" for v in tried)
    raise ConfigError(f"model {name!r}: no variant meets its fidelity gates on this CPU ({cpu.path}): {summary}")


def cuda_available_for(settings: Settings, entries: list[ModelEntry]) -> bool:
    """torch's answer, asked only when it can matter: ``device = cuda``, a configured model with a
    CUDA variant, or one whose CPU artifact is TorchScript (torch is loaded then anyway). A server
    whose every model runs on ONNX Runtime (or dlib) on CPU never imports torch (the lite bundle has none)."""
    needs_torch = (
        settings["runtime.device"] == "cuda"
        or any(s.device == "cuda" for s in settings.models)
        or "torch" in sys.modules
        or any("cuda" in e.variants or e.cpu_backend == "torchscript" for e in entries)
    )
    if not needs_torch:
        return False
    import torch

    return bool(torch.cuda.is_available())


def _no_cuda_why(entry: ModelEntry) -> str:
    """Why the build wrote no CUDA variant, as it recorded it (``""`` for artifacts that record none)."""
    return str(entry.verification.get(NO_CUDA_KEY, ""))


def _provider(device: str, variant: Variant) -> dict[str, Any]:
    """``{"provider", "provider_reason"}``: the ONNX Runtime execution provider its sessions run on
    (runtime/onnx_session.py asks the same function), for a variant with ONNX graphs; else ``{}``."""
    if variant.backend != "onnxruntime" or not any(f.path.endswith(".onnx") for f in variant.files.values()):
        return {}  # TorchScript, or ConSE's numpy table under the torch-free key
    import onnxruntime as ort  # loaded already: the variant's sessions are

    providers, why = device_policy.ort_providers(device, ort.get_available_providers())
    return {"provider": providers[0], "provider_reason": why}


def model_info(entry: ModelEntry, choice: Mapping[str, Any]) -> dict[str, Any]:
    """/info's ``models[name]``: what the manifest says of the model and the device choice it serves with."""
    return {
        "task": entry.task,
        "source": entry.source,
        **choice,
        "files": {ref.path: ref.sha256 for ref in entry.all_files()},
        "verification": entry.verification,
        "backends": entry.backends,
    }
