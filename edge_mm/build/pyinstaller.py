"""`edge-mm package`: runs PyInstaller on ``edge_mm.spec`` (at the repo root) to make the executable bundle.

The bundle is a folder (onedir, the default) or one file plus its payload::

    dist/edge-mm/edge-mm              the executable (serve | info | check)
    dist/edge-mm/_internal/           Python, torch and the runtime code (onedir only)
    dist/edge-mm/settings.toml        artifacts_dir = "artifacts" (relative to this file)
    dist/edge-mm/artifacts/           manifest.json + the configured models' files
    dist/edge-mm/bundle_info.json     flavour (cpu | cuda), torch version, size

The flavour is the torch build of the interpreter that runs PyInstaller: the CPU-only torch
2.13.0 in ``.venv-cpu`` gives ``cpu``, the default ``.venv`` (CUDA build) gives ``cuda``, and
``.venv-lite`` (no torch: scripts/venv_lite.sh) gives ``lite``, whose every model must be
served by ONNX Runtime (``artifact_backend = "onnxruntime"``, settings.lite.toml).
The spec reads what to leave out from ``bundle_contents`` and, once PyInstaller has collected,
calls :func:`finish_bundle` here to put settings.toml (``bundle_settings``), artifacts/
(``bundle_artifacts``) and bundle_info.json beside the executable. Nothing here imports torch or
PyInstaller at import time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edge_mm.build.bundle_artifacts import artifacts_ready, copy_artifacts
from edge_mm.build.bundle_contents import FLAVOURS, INFO_NAME, NAME
from edge_mm.build.bundle_settings import settings_toml
from edge_mm.config import Settings, load_settings
from edge_mm.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "edge_mm.spec"
VENVS = {"cpu": ROOT / ".venv-cpu", "lite": ROOT / ".venv-lite"}  # the interpreter each flavour is built with
# The CUDA bundle's onnxruntime: onnxruntime-gpu (CPU and CUDA execution providers), installed with
# pip --target here and put first on PyInstaller's path, so .venv keeps the CPU package its tests use.
ORT_GPU_DIR = ROOT / "build" / "ort-gpu"
ORT_GPU_REQUIREMENTS = ROOT / "requirements" / "cuda-ort.txt"


def dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def strip_libpython(bundle: Path) -> None:
    """Drop libpython's symbol table (23 -> 6 MB; the lite bundle's 250 MB aim). Only libpython: stripping every
    library, as PyInstaller's ``strip`` does, breaks numpy's OpenBLAS ("ELF load command ... not page-aligned")."""
    if shutil.which("strip") is None:
        print("edge-mm package: no strip (binutils) here; libpython keeps its symbols", flush=True)
        return
    for lib in (bundle / "_internal").glob("libpython3*.so*"):
        if lib.is_file() and not lib.is_symlink():
            subprocess.run(["strip", "--strip-unneeded", str(lib)], check=True)


def finish_bundle(bundle: Path, config: Path, flavour: str, *, onefile: bool, excluded: bool) -> dict[str, Any]:
    """Put settings.toml, artifacts/ and bundle_info.json next to the executable; returns the info."""
    torch = None if flavour == "lite" else __import__("torch")
    try:  # the module PyInstaller collected (onnxruntime-gpu for the CUDA flavour), not the .venv's metadata
        import onnxruntime

        ort_version: str | None = onnxruntime.__version__
        ort_providers: list[str] = onnxruntime.get_available_providers()
    except ImportError:
        ort_version, ort_providers = None, []

    settings = load_settings(config)
    if flavour == "lite":
        strip_libpython(bundle)
    copied = copy_artifacts(settings, bundle / "artifacts", flavour)
    (bundle / "settings.toml").write_text(settings_toml(settings, "artifacts"), encoding="utf-8")
    check = load_settings(bundle / "settings.toml", env={})
    if check.models != settings.models or check.path("runtime.artifacts_dir") != (bundle / "artifacts").resolve():
        raise ConfigError("the bundled settings.toml does not read back as written (a bug in settings_toml)")
    info = {
        "flavour": flavour,
        "torch_version": torch.__version__ if torch is not None else None,
        "cuda_version": torch.version.cuda if torch is not None else None,
        "onnxruntime_version": ort_version,
        "onnxruntime_providers": ort_providers,
        "allocator": "jemalloc" if (bundle / "_internal" / "jemalloc" / "libjemalloc.so.2").is_file() else "glibc",
        "artifacts_torch_version": copied["torch_version"],
        "edge_mm_version": copied["edge_mm_version"],
        "models": sorted(copied["models"]),
        "onefile": onefile,
        "build_only_excluded": excluded,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    info["size_bytes"] = dir_size(bundle)
    (bundle / INFO_NAME).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def ort_gpu_overlay(python: str) -> Path:
    """build/ort-gpu with onnxruntime-gpu in it (installed once, pip --target), for the CUDA bundle."""
    if not (ORT_GPU_DIR / "onnxruntime" / "capi").is_dir():
        print(f"edge-mm package: installing {ORT_GPU_REQUIREMENTS.name} into {ORT_GPU_DIR}", flush=True)
        cmd = [python, "-m", "pip", "install", "-q", "--no-deps", "--target", str(ORT_GPU_DIR)]
        if subprocess.run([*cmd, "-r", str(ORT_GPU_REQUIREMENTS)], check=False).returncode != 0:
            raise ConfigError(f"could not install {ORT_GPU_REQUIREMENTS} into {ORT_GPU_DIR}; see pip's output above")
    return ORT_GPU_DIR


def _has_transformers() -> bool:
    import importlib.util

    return importlib.util.find_spec("transformers") is not None


def _env_name(python: str) -> str:
    """A name for the interpreter's environment (.venv-cpu -> venv-cpu): one PyInstaller work folder each."""
    return Path(python).absolute().parent.parent.name.lstrip(".") or "python"


def package(
    settings: Settings,
    *,
    onefile: bool = False,
    dist: Path | None = None,
    python: str | None = None,
    excludes: bool = True,
    flavour: str | None = None,
) -> Path:
    """Build the bundle from ``edge_mm.spec``; returns the bundle folder.

    ``python``: the interpreter that runs PyInstaller and whose torch goes into the bundle
    (default: this one). Artifacts missing for a configured model are built first with this
    interpreter (which then needs transformers: the default environment). ``flavour`` (cpu | cuda |
    lite): the bundle must come out as that flavour; ``python`` defaults to its environment
    (.venv-cpu, .venv-lite) when one exists.
    """
    python = _interpreter(flavour, python)
    if getattr(sys, "frozen", False) or not SPEC.is_file():
        raise ConfigError(f"'edge-mm package' runs from a source checkout ({SPEC.name} not found next to edge_mm/)")
    _ensure_artifacts(settings)
    dist = (dist or ROOT / "dist").resolve()
    python = python or sys.executable
    t0 = time.perf_counter()
    # jemalloc for the bundle's server (runtime/malloc.py); without it the bundle serves on glibc's malloc
    subprocess.run(["bash", str(ROOT / "scripts" / "jemalloc.sh")], check=True, stdout=subprocess.DEVNULL)
    _run_pyinstaller(settings, python, dist, onefile=onefile, excludes=excludes, flavour=flavour)
    bundle = dist / (f"{NAME}-onefile" if onefile else NAME)
    info = json.loads((bundle / INFO_NAME).read_text())
    if flavour is not None and info["flavour"] != flavour:
        raise ConfigError(f"asked for a {flavour} bundle, but {python} made a {info['flavour']} one")
    if flavour == "cuda" and "CUDAExecutionProvider" not in info["onnxruntime_providers"]:
        raise ConfigError(f"the CUDA bundle's onnxruntime has no CUDA provider ({info['onnxruntime_providers']})")
    print(
        f"edge-mm package: {bundle} ({info['flavour']} flavour, torch {info['torch_version']}, "
        f"onnxruntime {info.get('onnxruntime_version')}, "
        f"{'onefile' if onefile else 'onedir'}) {info['size_bytes'] / 1e6:.0f} MB in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    return bundle


def _interpreter(flavour: str | None, python: str | None) -> str | None:
    """``python`` as given, else the flavour's own environment (.venv-cpu, .venv-lite) where it has one."""
    if flavour is not None and flavour not in FLAVOURS:
        raise ConfigError(f"--flavour {flavour!r} is not one of {', '.join(FLAVOURS)}")
    if python is None and flavour in VENVS:
        python = str(VENVS[flavour] / "bin" / "python")
        if not Path(python).is_file():
            raise ConfigError(f"{python} is missing: run scripts/venv_{flavour}.sh (or make bundle-{flavour})")
    return python


def _ensure_artifacts(settings: Settings) -> None:
    """Build the configured models' artifacts first where any is missing (needs the default environment)."""
    why = artifacts_ready(settings)
    if why is None:
        return
    if not _has_transformers():
        raise ConfigError(f"{why}; build the artifacts first with the default environment: make build")
    from edge_mm.build.all_models import build_all

    print(f"edge-mm package: {why}; building artifacts first", flush=True)
    build_all(settings)


def _run_pyinstaller(
    settings: Settings, python: str, dist: Path, *, onefile: bool, excludes: bool, flavour: str | None
) -> None:
    """PyInstaller on edge_mm.spec with ``python``, the settings to bundle written beside its work folder."""
    work = ROOT / "build" / "pyinstaller"
    work.mkdir(parents=True, exist_ok=True)
    # the settings to bundle, pointing at the built artifacts; one file per environment, as the work folders
    config = work / f"package-settings-{_env_name(python)}.toml"
    config.write_text(settings_toml(settings, str(settings.path("runtime.artifacts_dir"))), encoding="utf-8")
    spec_args = ["--config", str(config)] + (["--onefile"] if onefile else []) + ([] if excludes else ["--no-excludes"])
    cmd = [
        python, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
        "--distpath", str(dist), "--workpath", str(work / f"{'onefile' if onefile else 'onedir'}-{_env_name(python)}"),
        str(SPEC), "--", *spec_args,
    ]  # fmt: skip
    print("edge-mm package: " + " ".join(cmd), flush=True)
    env = dict(os.environ, PYTHONNOUSERSITE="1")
    if flavour == "cuda":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ort_gpu_overlay(python)), env.get("PYTHONPATH")]))
    result = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        raise ConfigError(f"PyInstaller failed (exit {result.returncode}); its output is above")
