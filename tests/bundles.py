"""The CPU bundle, built once per test session: tests/test_bundle.py and tests/deploy/test_image.py
both use it (a few minutes on 2 cores: .venv-cpu if missing, artifacts if missing, PyInstaller).
The lite bundle (no torch; settings.lite.toml) likewise, for tests/test_bundle_lite.py, and the CUDA bundle
(the default .venv, ~5 GB) for tests/test_bundle_cuda.py."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from edge_mm.build.pyinstaller import package
from edge_mm.config import Settings, load_settings
from tests.serving import ROOT

VENV_CPU = ROOT / ".venv-cpu"
TEST_BUNDLE_DIST = ROOT / "build" / "work" / "test-bundle"
LITE_SETTINGS = ROOT / "settings.lite.toml"
TEST_LITE_DIST = ROOT / "build" / "work" / "test-bundle-lite"
TEST_CUDA_DIST = ROOT / "build" / "work" / "test-bundle-cuda"


def servable(settings: Settings) -> Settings:
    """The configured models whose task this checkout's runtime can load (others are work in progress)."""
    from edge_mm.tasks.table import LOADERS

    tasks = set(LOADERS)
    return Settings(settings.values, tuple(m for m in settings.models if m.task in tasks), settings.base_dir)


@functools.cache
def cpu_bundle() -> Path:
    """build/work/test-bundle/edge-mm from the repo's settings.toml (the servable models)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "venv_cpu.sh")], check=True, timeout=1200)
    settings = servable(load_settings(ROOT / "settings.toml"))
    assert settings.models, "no servable model in settings.toml"
    return package(settings, dist=TEST_BUNDLE_DIST, python=str(VENV_CPU / "bin" / "python"))


@functools.cache
def lite_bundle() -> Path:
    """build/work/test-bundle-lite/edge-mm from settings.lite.toml: .venv-lite (no torch), ONNX Runtime artifacts."""
    subprocess.run(["bash", str(ROOT / "scripts" / "venv_lite.sh")], check=True, timeout=1200)
    return package(load_settings(LITE_SETTINGS), dist=TEST_LITE_DIST, flavour="lite")


@functools.cache
def cuda_bundle() -> Path:
    """build/work/test-bundle-cuda/edge-mm: the default .venv's CUDA torch plus onnxruntime-gpu (make bundle-cuda)."""
    settings = servable(load_settings(ROOT / "settings.toml"))
    return package(settings, dist=TEST_CUDA_DIST, flavour="cuda")
