"""The registry: reads the manifest, checks hashes, picks devices and backends, loads and warms the models.

It owns every loaded model; tasks ask it for one by name and the model kinds they accept.
Which loader builds which kind's runner is injected (the task table's ``LOADERS``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import edge_mm
from edge_mm import device as device_policy
from edge_mm.config import Settings
from edge_mm.errors import NotFound, NotReady
from edge_mm.manifest import MANIFEST_NAME, Manifest, ModelEntry
from edge_mm.runtime import cpu_features
from edge_mm.runtime.artifacts import set_cpu_threads
from edge_mm.runtime.malloc import allocator_in_use, trim_heap
from edge_mm.runtime.model_loading import (
    cuda_available_for,
    load_served,
    model_info,
    open_partners,
    selected_versions,
    served_entry_for,
)
from edge_mm.runtime.options import KindOptions
from edge_mm.runtime.runner import Loader
from edge_mm.runtime.served import Served
from edge_mm.runtime.versions import Catalog, Version, split_name

__all__ = ["Registry", "Served", "load_registry"]

log = logging.getLogger("edge_mm.registry")


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

    def every_version(self) -> list[Served]:
        """Every model version served, default or not, model by model."""
        return [served for name in self.models for served in self.served_versions(name).values()]

    def request_name(self, served: Served) -> str:
        """How a request names ``served``: its model's name for the default version, else ``name@N``."""
        return served.name if self.models.get(served.name) is served else f"{served.name}@{served.version}"

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
        for served in self.every_version():
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
    solo = settings["runtime.solo_threads"] or cores
    solo = solo if solo > intra else 0  # runtime/solo.py
    set_cpu_threads(intra, solo)
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
    for served in registry.every_version():  # a version named name@N needs its partners and store too
        open_partners(served, settings, known)
    set_cpu_threads(intra, solo)  # again: torch may have been imported by a TorchScript loader
    registry.info = _info(header, known, settings, choices, intra, concurrent, cuda)
    registry.info["threads"]["solo"] = solo
    for name, served in registry.models.items():
        registry.info["models"][name]["version"] = served.version
        registry.info["models"][name]["versions"] = sorted(registry.served_versions(name))
    return registry


def _any_manifest(picked: Mapping[str, list[Version]]) -> Manifest:
    """A manifest for /info's ``artifacts`` header where there is no flat one: the first version's."""
    return next(v.manifest for versions in picked.values() for v in versions)


def _cuda_device_name(torch: Any) -> str | None:
    """GPU 0's name; None where torch cannot say (a driver problem, or CUDA only assumed: ``cuda_available``)."""
    try:
        return str(torch.cuda.get_device_name(0))
    except (RuntimeError, AssertionError):
        return None


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
        "allocator": allocator_in_use(),  # jemalloc when `edge-mm serve` preloaded it (runtime/malloc.py)
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
