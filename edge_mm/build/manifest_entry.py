"""What the builders share to write a manifest entry: sample photos, the reference sample,
saved variants, file references, and the entry itself (build time only)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from edge_mm.build import artifact_backend
from edge_mm.config import ModelSpec
from edge_mm.manifest import FileRef, ModelEntry, Variant, sha256_file
from edge_mm.runtime import cpu_features

DATA = Path(__file__).with_name("data")
# Small thumbnails of scikit-image's public-domain photos (cat, coffee, astronaut, camera).
SAMPLE_NAMES = ("cat", "coffee", "astronaut", "camera")


def sample_images() -> list[Image.Image]:
    """Real photos for verification: four RGB thumbnails (100-192 px)."""
    return [Image.open(DATA / f"sample_{name}.jpg").convert("RGB") for name in SAMPLE_NAMES]


def write_reference(
    path: Path, inputs: list[Any], outputs: list[Any], tolerance: float | None = None, variant: str | None = None
) -> FileRef:
    """``{"inputs", "outputs"}`` for `edge-mm check`; outputs are nested float lists. ``tolerance``: the
    largest abs difference the check allows (a variant's own; None: the runtime's default). ``variant``:
    the variant that made the outputs, when a serving CPU may pick another (runtime/self_check.py)."""
    record: dict[str, Any] = {"inputs": inputs, "outputs": outputs}
    if variant is not None:
        record["variant"] = variant
    if tolerance is not None:
        record["tolerance"] = tolerance
    path.write_text(json.dumps(record))
    return FileRef(path.name, sha256_file(path))


def save_variant(module: torch.jit.ScriptModule, path: Path, dtype: str, notes: list[str]) -> Variant:
    artifact_backend.save(module, path)
    return Variant(files={"model": FileRef(path.name, sha256_file(path))}, dtype=dtype, notes=notes)


def file_ref(path: Path, out: Path) -> FileRef:
    return FileRef(str(path.relative_to(out)), sha256_file(path))


def max_abs(a: torch.Tensor | tuple[torch.Tensor, ...], b: torch.Tensor | tuple[torch.Tensor, ...]) -> float:
    """Largest |a - b| over tensors or tuples of tensors."""
    xs = a if isinstance(a, tuple) else (a,)
    ys = b if isinstance(b, tuple) else (b,)
    return max(float((x.float() - y.float()).abs().max()) if x.numel() else 0.0 for x, y in zip(xs, ys, strict=True))


def built_entry(spec: ModelSpec, t0: float, figures: dict[str, Any], **fields: Any) -> ModelEntry:
    """The model's manifest entry, with the build's figures (its time since ``t0``, s, and the CPU they were
    measured on: int8 figures hold for that CPU's int8 path, runtime/cpu_features.py) as verification."""
    figures["build_seconds"] = round(time.perf_counter() - t0, 1)
    figures["build_cpu"] = cpu_features.detect().describe()
    return ModelEntry(task=spec.task, source=spec.source, content_hash="", verification=figures, **fields)
