"""`edge-mm build`: every configured model -> verified artifacts + manifest.json.

An unchanged model (same settings, same source files, same torch and builder) is
not rebuilt: its content hash matches the manifest and its files still verify.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import torch

import edge_mm
from edge_mm.build.progress import Progress
from edge_mm.build.sources import resolve_source
from edge_mm.config import ModelSpec, Settings
from edge_mm.errors import ConfigError
from edge_mm.manifest import Manifest, ModelEntry, read_manifest

BUILDER_VERSION = (
    10  # bump when build code changes what it writes (10: text int8 recipes that hold on x86 without VNNI too)
)
Builder = Callable[[ModelSpec, Path, Path, Callable[[str], None]], ModelEntry]


def builder_for(task: str) -> Builder:
    """The build function the task table names for the model kind ``task``."""
    from edge_mm.tasks.table import MODEL_KINDS

    kind = MODEL_KINDS.get(task)
    if kind is None:
        raise ConfigError(f"task {task!r} has no builder in this version; use one of {', '.join(MODEL_KINDS)}")
    module, function = kind.builder.split(":")
    return getattr(importlib.import_module(f"edge_mm.build.{module}"), function)


def serve_options(task: str) -> frozenset[str]:
    """The serve-time option keys of the model kind ``task`` (the task table's): no build depends on them."""
    from edge_mm.tasks.table import OPTIONS

    kind = OPTIONS.get(task)
    return kind.serve_keys if kind is not None else frozenset()


def content_hash(spec: ModelSpec, source: Path) -> str:
    """sha256 over the model's build-time settings, its source files, torch version and builder version."""
    h = hashlib.sha256()
    meta = {
        "spec": spec.build_fingerprint(serve_options(spec.task)),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "builder": BUILDER_VERSION,
        "edge_mm": edge_mm.__version__,
    }
    h.update(json.dumps(meta, sort_keys=True).encode())
    files = (
        [source]
        if source.is_file()
        else sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    )
    for f in files:
        h.update(str(f.relative_to(source.parent if source.is_file() else source)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _still_valid(entry: ModelEntry, root: Path) -> bool:
    refs = entry.all_files()
    try:
        for ref in refs:
            ref.resolve(root)
    except ConfigError:
        return False
    return True


def build_all(settings: Settings, *, only: list[str] | None = None, force: bool = False, out=sys.stdout) -> Manifest:
    """Build the configured models (or ``only`` those named) and write the manifest."""
    root = settings.path("runtime.artifacts_dir")
    try:
        previous = read_manifest(root).models
    except ConfigError:
        previous = {}
    selected = [m for m in settings.models if not only or m.name in only]
    unknown = set(only or []) - {m.name for m in settings.models}
    if unknown:
        raise ConfigError(f"--only names model(s) not in settings: {sorted(unknown)}")
    models: dict[str, ModelEntry] = {}
    for i, spec in enumerate(settings.models):
        progress = _model_progress(out, f"[{i + 1}/{len(settings.models)}] {spec.name}")
        build = builder_for(spec.task)
        source = resolve_source(
            spec.source,
            packages_dir=settings.path("build.packages_dir"),
            base_dir=settings.base_dir,
            allow_download=settings["build.allow_download"],
        )
        digest = content_hash(spec, source)
        old = previous.get(spec.name)
        if spec not in selected:
            if old is not None:
                models[spec.name] = old
            continue
        if not force and old is not None and old.content_hash == digest and _still_valid(old, root):
            progress("unchanged, not rebuilt")
            models[spec.name] = old
            continue
        models[spec.name] = _build_one(build, spec, source, digest, root, progress)
    cuda_build = "+cpu" not in torch.__version__ and torch.version.cuda is not None
    manifest = Manifest(
        edge_mm_version=edge_mm.__version__,
        torch_version=torch.__version__,
        flavour="cuda" if cuda_build else "cpu",
        models=models,
    )
    manifest.write(root)
    return manifest


def _model_progress(out: TextIO, prefix: str) -> Progress:
    """Build progress lines for one model, e.g. ``[2/5] efficientnet: traced fp32 ...``."""

    def progress(msg: str) -> None:
        print(f"{prefix}: {msg}", file=out, flush=True)

    return progress


def _build_one(
    build: Builder, spec: ModelSpec, source: Path, digest: str, root: Path, progress: Progress
) -> ModelEntry:
    """Build one model in a staging folder, then move it to ``root / spec.name``; returns its manifest entry."""
    progress(f"building {spec.task} from {source}")
    t0 = time.perf_counter()
    staging = root / f".{spec.name}.building"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    entry = build(spec, source, staging, progress)
    if spec.artifact_backend == "onnxruntime" and entry.backends.get("serves") != "onnxruntime":
        raise ConfigError(
            f"model {spec.name!r}: artifact_backend = onnxruntime, but {spec.task} models have no "
            "ONNX Runtime backend in this version; use auto or torchscript"
        )
    entry.content_hash = digest
    # the manifest records build-time options only: serve-time ones come from settings at each start
    entry.options = {k: v for k, v in entry.options.items() if k not in serve_options(spec.task)}
    final = root / spec.name
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    _prefix_paths(entry, spec.name)
    progress(f"done in {time.perf_counter() - t0:.1f} s")
    return entry


def _prefix_paths(entry: ModelEntry, folder: str) -> None:
    """Builders write names relative to the model folder; the manifest stores them relative to the root.

    A file two variants share (MTCNN's CUDA variant loads the CPU nets) may be one ``FileRef``
    object: each object is prefixed once.
    """
    for ref in {id(ref): ref for ref in entry.all_files()}.values():
        ref.path = f"{folder}/{ref.path}"
