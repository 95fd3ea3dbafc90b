"""The bundle's artifacts/: checks that the configured models are built, copies their files and a
manifest trimmed to the variants the flavour can serve."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from edge_mm.config import Settings
from edge_mm.errors import ConfigError
from edge_mm.manifest import (
    MANIFEST_NAME,
    ORT_7BIT_VARIANT,
    ORT_FP32_VARIANT,
    ORT_VARIANT,
    read_manifest,
    variant_device,
)


def artifacts_ready(settings: Settings) -> str | None:
    """None when every configured model has artifacts with intact files; else why not."""
    root = settings.path("runtime.artifacts_dir")
    try:
        manifest = read_manifest(root)
    except ConfigError as exc:
        return str(exc)
    for spec in settings.models:
        entry = manifest.models.get(spec.name)
        if entry is None:
            return f"model {spec.name!r} has no artifacts in {root}"
        refs = entry.all_files()
        missing = [r.path for r in refs if not (root / r.path).is_file()]
        if missing:
            return f"model {spec.name!r}: missing {missing[0]}"
    return None


def copy_artifacts(settings: Settings, dest: Path, flavour: str) -> dict[str, Any]:
    """Copy the configured models' files into ``dest`` with a manifest for this bundle.

    The CPU flavour drops CUDA variants (its torch cannot run them; it keeps ``cpu-onnxruntime``); the copied manifest's
    ``flavour`` is the bundle's, its ``torch_version`` still the one that wrote the artifacts.
    Hashes are checked on the way (a corrupt artifact stops packaging, as it would stop serving).
    """
    src = settings.path("runtime.artifacts_dir")
    raw = json.loads((src / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest = read_manifest(src)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    models: dict[str, Any] = {}
    for spec in settings.models:
        entry = manifest.models[spec.name]
        model_raw = raw["models"][spec.name]
        if flavour == "lite":
            model_raw["variants"] = _lite_variants(spec.name, entry.cpu_backend, model_raw["variants"])
        elif flavour == "cpu":
            model_raw["variants"] = {k: v for k, v in model_raw["variants"].items() if variant_device(k) == "cpu"}
            if not model_raw["variants"]:
                raise ConfigError(f"model {spec.name!r} has no CPU variant; the CPU bundle cannot serve it")
        keep = set(model_raw["variants"])
        refs = entry.all_files(keep)
        for ref in refs:
            target = dest / ref.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ref.resolve(src), target)
        models[spec.name] = model_raw
    raw["models"] = models
    raw["flavour"] = flavour
    (dest / MANIFEST_NAME).write_text(json.dumps(raw, indent=2, sort_keys=True), encoding="utf-8")
    return raw


def _lite_variants(name: str, cpu_backend: str, variants: dict[str, Any]) -> dict[str, Any]:
    """The lite bundle keeps each model's ONNX Runtime variants only (the int8 one and its fp32-compute fallback),
    or the ``cpu`` variant of a model served by a library of its own (dlib); a model served by TorchScript is refused."""
    if cpu_backend not in ("onnxruntime", "torchscript"):
        return {k: v for k, v in variants.items() if k == "cpu"}
    if cpu_backend != "onnxruntime" or ORT_VARIANT not in variants:
        raise ConfigError(
            f"model {name!r} is served by {cpu_backend} on CPU; the lite bundle has no torch: set "
            'artifact_backend = "onnxruntime" for it (settings.lite.toml) and build again, or leave it out'
        )
    return {k: v for k, v in variants.items() if k in (ORT_VARIANT, ORT_7BIT_VARIANT, ORT_FP32_VARIANT)}
