"""Versioned artifacts made from the tiny ones: version N of ``tiny-sentiment`` is a copy of either
its own build (odd N) or tiny-sentiment-distil's (even N), so consecutive versions answer differently."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from edge_mm.build.version_bundle import write_version_folder
from edge_mm.config import Settings

MODEL = "tiny-sentiment"
OTHER = "tiny-sentiment-distil"  # another text classifier: its artifacts make a visibly different version


def artifacts_copy(tiny_settings: Settings, dst: Path) -> Path:
    shutil.copytree(tiny_settings.path("runtime.artifacts_dir"), dst)
    return dst


def add_version(root: Path, number: int, *, source: str | None = None, sign=None) -> Path:  # type: ignore[no-untyped-def]
    """``root/tiny-sentiment/<number>/`` from ``source``'s flat artifacts (default: by parity, see above)."""
    source = source or (OTHER if number % 2 == 0 else MODEL)
    return write_version_folder(root, source, root / MODEL / str(number), as_name=MODEL, sign=sign)


def with_policy(settings: Settings, root: Path, policy: str = "latest", **overrides: object) -> Settings:
    """``settings`` on the artifacts in ``root`` with tiny-sentiment's version_policy set."""
    models = tuple(dataclasses.replace(m, version_policy=policy) if m.name == MODEL else m for m in settings.models)
    out = dataclasses.replace(settings, models=models)
    return out.replace(runtime__artifacts_dir=str(root), **overrides)
