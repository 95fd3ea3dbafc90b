"""The registry: reads the manifest, checks hashes, picks devices and backends, loads and warms the models.

It owns every loaded model; tasks ask it for one by name and the model kinds they accept.
Which loader builds which kind's runner is injected (the task table's ``LOADERS``).
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import edge_mm
from edge_mm import device as device_policy
from edge_mm.config import ModelSpec, Settings
from edge_mm.errors import ConfigError, NotFound, NotReady
from edge_mm.manifest import MANIFEST_NAME, NO_CUDA_KEY, Manifest, ModelEntry, Variant
from edge_mm.runtime import cpu_features, fidelity_gate
from edge_mm.runtime.admission import Admission
from edge_mm.runtime.artifacts import serving_variant, set_cpu_threads
from edge_mm.runtime.deadline import Deadline
from edge_mm.runtime.malloc import trim_heap
from edge_mm.runtime.options import KindOptions, served_entry
from edge_mm.runtime.runner import BatchedRunner, Loader
from edge_mm.runtime.versions import Catalog, Version, split_name

log = logging.getLogger("edge_mm.registry")
T = TypeVar("T")


@dataclass
class Served:
    """One model as the API sees it: the loaded runner plus its admission gate."""

    name: str
    kind: str  # the model's task in settings, e.g. "embeddings"
    runner: Any  # the kind's runner, e.g. TextModel; task modules know its type
    admission: Admission
    device: str
    variant: str
    entry: ModelEntry
    warm_ms: float = 0.0
    version: int = 1  # runtime/versions.py; the flat artifacts layout is version 1
    root: Path | None = None  # the folder its manifest's file paths are relative to (None: runtime.artifacts_dir)
    # hot swap (runtime/swap.py): requests using it now, and where new ones go once it is retired
    _users: int = field(default=0, init=False, repr=False, compare=False)
    _retired: bool = field(default=False, init=False, repr=False, compare=False)
    _successor: Served | None = field(default=None, init=False, repr=False, compare=False)
    _state: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False, compare=False)

    @property
    def options(self) -> Mapping[str, Any]:
        """The model's options: the serve-time ones from settings at start-up (with their defaults), the
        build-time ones as the manifest records them (runtime/options.py)."""
        return self.entry.options

    def run(self, deadline: Deadline, work: Callable[[Any], T]) -> tuple[T, float]:
        """``work(runner)`` inside the admission slot, waiting at most until ``deadline``; with its ms in the slot.

        A pool's ingress (edge_mm/ray_serve) overrides this to run ``work`` where the model's replicas are.
        """
        target = self.enter()  # this version, or the one that replaced it if it was retired meanwhile
        try:
            with target.admission.slot(deadline):
                t0 = time.perf_counter()
                result = work(target.runner)
                return result, (time.perf_counter() - t0) * 1000
        finally:
            target.leave()

    def enter(self) -> Served:
        """Count a request on this version; once retired, on its successor (NotFound when it was unloaded)."""
        with self._state:
            if not self._retired:
                self._users += 1
                return self
            successor = self._successor
        if successor is None:
            raise NotFound(f"model {self.name!r} was unloaded; GET /v1/models lists the models served")
        return successor.enter()

    def leave(self) -> None:
        with self._state:
            self._users -= 1
            self._state.notify_all()

    def retire(self, successor: Served | None, timeout_s: float) -> bool:
        """New requests go to ``successor`` (or fail with 404 when None); waits until those already
        here finish, at most ``timeout_s``, then stops the runner's batcher. True when it went idle."""
        with self._state:
            self._retired, self._successor = True, successor
            idle = self._state.wait_for(lambda: self._users == 0, timeout=timeout_s)
        batcher = getattr(self.runner, "batcher", None)
        if idle and batcher is not None and hasattr(batcher, "close"):
            batcher.close()
        return idle

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "task": self.kind,
            "device": self.device,
            "dtype": self.entry.variants[self.variant].dtype,
            "labels": len(self.entry.labels or []),
            "warm_ms": round(self.warm_ms, 1),
        }


@dataclass
class Registry:
    models: dict[str, Served] = field(default_factory=dict)  # name -> the version a request without one gets
    info: dict[str, Any] = field(default_factory=dict)
    # name -> version -> model, for every version served (runtime/versions.py); a model missing here has one
    versions: dict[str, dict[int, Served]] = field(default_factory=dict)
    _ready: threading.Event = field(default_factory=threading.Event)
    failure: str | None = None  # why warm-up failed, without the error's message (/health/ready shows it)
    failed_model: str | None = None  # the model whose warm-up failed

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def mark_ready(self) -> None:
        self._ready.set()

    def get(self, name: str | None, kinds: Collection[str], route: str) -> Served:
        """The model serving ``route``: the one named, or the first whose kind is in ``kinds``."""
        if not self.ready:
            raise NotReady("models are still loading; retry shortly", headers={"Retry-After": "1"})
        if name is None:
            for served in self.models.values():
                if served.kind in kinds:
                    return served
            raise NotFound(f"no model serving {route} is configured")
        served = self.named(name)
        if served.kind not in kinds:
            raise NotFound(f"model {name!r} is a {served.kind} model and does not serve {route}")
        return served

    def served_versions(self, name: str) -> dict[int, Served]:
        """Version -> model for every version of ``name`` served (empty when it is not served)."""
        found = self.versions.get(name)
        if found is not None:
            return found
        served = self.models.get(name)
        return {served.version: served} if served is not None else {}

    def named(self, name: str) -> Served:
        """The model ``name`` or ``name@version`` (runtime/versions.py); NotFound when it is not served."""
        try:
            model, version = split_name(name)
        except ValueError as exc:
            raise NotFound(str(exc)) from None
        served = self.models.get(model)
        if served is None:
            raise NotFound(f"model {model!r} is not served here; GET /v1/models lists them")
        if version is None:
            return served
        versions = self.served_versions(model)
        if version not in versions:
            raise NotFound(f"model {model!r} has no version {version} served; it serves {sorted(versions)}")
        return versions[version]

    def install(self, name: str, versions: dict[int, Served]) -> None:
        """Serve ``versions`` of ``name`` from now on, the highest by default (one assignment each: a request
        sees the old set or the new one)."""
        self.versions[name] = dict(sorted(versions.items()))
        self.models[name] = versions[max(versions)]

    def remove(self, name: str) -> dict[int, Served]:
        """Stop serving ``name``; the versions it served."""
        gone = self.served_versions(name)
        self.models.pop(name, None)
        self.versions.pop(name, None)
        return gone

    def warm_all(self) -> None:
        """Warm every model, then mark ready. A failure is logged, recorded (``failure``, ``failed_model``)
        and leaves the server not ready; the models after the failed one are not warmed."""
        for served in [s for versions in self.versions.values() for s in versions.values()] or self.models.values():
            try:
                served.warm_ms = served.runner.warm()
            except Exception as exc:
                self.failed_model = served.name
                self.failure = f"warm-up of model {served.name!r} failed: {type(exc).__name__}"
                log.exception("warm-up of model %r failed: %s: %s", served.name, type(exc).__name__, exc)
                return
            log.info("warmed %s on %s in %.0f ms", served.name, served.device, served.warm_ms)
        trim_heap()  # what loading and warming freed is not resident any more
        self.mark_ready()


def load_registry(
    settings: Settings,
    loaders: Mapping[str, Loader],
    *,
    options: Mapping[str, KindOptions],
    cuda_available: bool | None = None,
) -> Registry:
    """Load every configured model from the manifest with its kind's loader; raises ConfigError on any problem.

    ``loaders`` maps each model kind to its runner's loader (the task table's ``LOADERS``), ``options``
    to its options (the task table's ``OPTIONS``): every model's are checked before any loads, and
    each serves with the serve-time ones from settings (runtime/options.py).
    Each model's device follows its ``device`` setting, or ``runtime.device`` (edge_mm/device.py);
    ``info["models"][name]`` says which device, variant and (ONNX Runtime) provider serve it and
    why; ``info["device"]`` is ``cuda`` when any model serves on CUDA, else ``cpu``.
    """
    catalog = Catalog(settings.path("runtime.artifacts_dir"), settings.optional_path("runtime.verify_key"))
    picked = {spec.name: selected_versions(catalog, spec) for spec in settings.models}
    entries = {
        (spec.name, v.number): served_entry_for(spec, v.manifest, v.root, loaders, options)
        for spec in settings.models
        for v in picked[spec.name]
    }
    cuda = cuda_available_for(settings, list(entries.values())) if cuda_available is None else cuda_available
    cores = os.cpu_count() or 1
    intra, concurrent = device_policy.cpu_threads(
        cores, settings["runtime.intra_op_threads"], settings["runtime.concurrent_inferences"]
    )
    set_cpu_threads(intra)
    registry = Registry()
    choices = {}
    for spec in settings.models:
        loaded = {}
        for v in picked[spec.name]:
            served, choice = load_served(
                spec, v, entries[spec.name, v.number], settings, loaders, cuda=cuda, concurrent=concurrent
            )
            loaded[v.number] = served
            choices[spec.name] = choice  # the default (highest) version's, last
        registry.install(spec.name, loaded)
    header = catalog.flat() if (catalog.root / MANIFEST_NAME).is_file() else _any_manifest(picked)
    known = {**header.models, **{name: entry for (name, _), entry in entries.items()}}
    for served in registry.models.values():
        open_partners(served, settings, known)
    set_cpu_threads(intra)  # again: torch may have been imported by a TorchScript loader
    registry.info = _info(header, known, settings, choices, intra, concurrent, cuda)
    for name, served in registry.models.items():
        registry.info["models"][name]["version"] = served.version
        registry.info["models"][name]["versions"] = sorted(registry.served_versions(name))
    return registry


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
        variant, backend_reason = serving_variant(entry, choice.variant, spec.artifact_backend)
    except ConfigError as exc:
        raise ConfigError(f"model {spec.name!r}: {exc}") from None
    if choice.device == "cpu":
        variant = fidelity_gate.path_variant(entry, variant, cpu_features.detect())
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


def _any_manifest(picked: Mapping[str, list[Version]]) -> Manifest:
    """A manifest for /info's ``artifacts`` header where there is no flat one: the first version's."""
    return next(v.manifest for versions in picked.values() for v in versions)


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
    whose every model runs on ONNX Runtime on CPU never imports torch (the lite bundle has none)."""
    needs_torch = (
        settings["runtime.device"] == "cuda"
        or any(s.device == "cuda" for s in settings.models)
        or "torch" in sys.modules
        or any("cuda" in e.variants or e.cpu_backend != "onnxruntime" for e in entries)
    )
    if not needs_torch:
        return False
    import torch

    return bool(torch.cuda.is_available())


def _cuda_device_name(torch: Any) -> str | None:
    """GPU 0's name; None where torch cannot say (a driver problem, or CUDA only assumed: ``cuda_available``)."""
    try:
        return str(torch.cuda.get_device_name(0))
    except (RuntimeError, AssertionError):
        return None


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


def _info(
    manifest: Manifest,
    entries: Mapping[str, ModelEntry],
    settings: Settings,
    choices: dict[str, Any],
    intra: int,
    concurrent: int,
    cuda: bool,
) -> dict[str, Any]:
    torch = sys.modules.get("torch")  # None where every model runs on ONNX Runtime
    ort = sys.modules.get("onnxruntime")
    return {
        "edge_mm_version": edge_mm.__version__,
        "torch_version": torch.__version__ if torch is not None else None,
        "onnxruntime_version": ort.__version__ if ort is not None else None,
        "artifacts": {
            "torch_version": manifest.torch_version,
            "flavour": manifest.flavour,
            "edge_mm_version": manifest.edge_mm_version,
        },
        # "cuda" when any model serves on CUDA, else "cpu"; each model's own device and why: "models"
        "device": device_policy.server_device([c["device"] for c in choices.values()]),
        "cuda_available": cuda,
        "cuda_device": _cuda_device_name(torch) if cuda and torch is not None else None,
        "threads": {"intra_op": intra, "concurrent_inferences": concurrent, "cores": os.cpu_count()},
        "cpu": cpu_features.detect().describe(),
        "limits": {
            k: settings[k]
            for k in (
                "server.max_body_bytes",
                "server.max_text_chars",
                "server.max_items",
                "runtime.queue_size",
                "runtime.request_timeout_s",
                "runtime.max_batch",
                "runtime.micro_batching",
                "server.max_upload_bytes",
                "server.max_image_pixels",
                "server.max_request_pixels",
                "server.max_label_chars",
                "server.max_audio_seconds",
                "server.max_video_seconds",
                "server.max_video_frames",
            )
        },
        "models": {name: model_info(entries[name], choices[name]) for name in choices},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
