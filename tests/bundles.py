"""The CPU bundle, built once per test session: tests/test_bundle.py and tests/deploy/test_image.py
both use it (a few minutes on 2 cores: .venv-cpu if missing, artifacts if missing, PyInstaller).
The lite bundle (no torch; settings.lite.toml) likewise, for tests/test_bundle_lite.py, and the CUDA bundle
(the default .venv, ~5 GB) for tests/test_bundle_cuda.py. The arm64 bundle (scripts/bundle_arm64.sh) and the
x86 lite bundle's probe answers once per session for the arm64 proofs, tests/test_bundle_arm64.py (chroot) and
tests/deploy/test_image_arm64.py (podman), which can run beside each other (in_background)."""

from __future__ import annotations

import functools
import subprocess
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

from edge_mm.build.pyinstaller import package
from edge_mm.config import Settings, load_settings
from tests.serving import ROOT

VENV_CPU = ROOT / ".venv-cpu"
TEST_BUNDLE_DIST = ROOT / "build" / "work" / "test-bundle"
LITE_SETTINGS = ROOT / "settings.lite.toml"
TEST_LITE_DIST = ROOT / "build" / "work" / "test-bundle-lite"
TEST_CUDA_DIST = ROOT / "build" / "work" / "test-bundle-cuda"
TEST_ARM64_DIST = ROOT / "build" / "work" / "test-bundle-arm64"


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


@functools.cache
def arm64_bundle() -> Path:
    """build/work/test-bundle-arm64/edge-mm, from the same lite artifacts as the x86 lite bundle."""
    lite_bundle()  # builds the lite artifacts where missing, with the default environment
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "bundle_arm64.sh"), str(TEST_ARM64_DIST)],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    return Path(out.stdout.strip().splitlines()[-1])


@functools.cache
def lite_report() -> dict:
    """tests/arm64_probe.py's report on the x86-64 lite bundle, run natively: the answers the arm64 ones must equal."""
    from tests.arm64_probe import probe

    return probe(lite_bundle() / "edge-mm", None, None)


# The two emulated arm64 proofs take minutes each, mostly one busy core each: whichever module asks first
# starts both (its own and, when the session selected it, the other's), so that they run side by side.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="arm64-proof")
_STARTED: dict[str, Future] = {}
_LOCK = threading.Lock()


def in_background(name: str, work: Callable[[], dict]) -> Future:
    """``work()`` started once per session under ``name`` in a worker thread; its future."""
    with _LOCK:
        if name not in _STARTED:
            _STARTED[name] = _POOL.submit(work)
        return _STARTED[name]


def arm64_proof(name: str, work: Callable[[], dict], modules: Iterable[object]) -> dict:
    """``work()``'s report (module ``name``'s proof). First builds the bundles (not thread-safe), then starts it
    and the ``background_proof`` of every other module given that has one (the session's test modules), and
    waits for all of them: they overlap, and none outlives the fixture that asked first."""
    arm64_bundle()
    lite_bundle()
    futures = [in_background(name, work)]
    for module in dict.fromkeys(modules):
        other = getattr(module, "background_proof", None)
        if other is not None:
            futures.append(in_background(getattr(module, "__name__", name), other))
    wait(futures)
    return futures[0].result()
