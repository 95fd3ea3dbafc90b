"""`edge-mm package`: the executable bundle (PyInstaller, ``edge_mm.spec`` at the repo root).

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
The spec imports this module for its lists and for :func:`finish_bundle`; nothing here
imports torch or PyInstaller at import time.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_mm.config import MODEL_SETTINGS, SETTINGS, Settings, load_settings
from edge_mm.errors import ConfigError
from edge_mm.manifest import (
    MANIFEST_NAME,
    ORT_7BIT_VARIANT,
    ORT_FP32_VARIANT,
    ORT_VARIANT,
    read_manifest,
    variant_device,
)

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "edge_mm.spec"
NAME = "edge-mm"
INFO_NAME = "bundle_info.json"

# Packages the bundle must not carry: build-time only (the runtime never imports them; a test
# proves it), developer tools, and what torch's hook or its optional imports would drag in.
BUILD_ONLY = (
    "edge_mm.build",
    "transformers",
    "torchvision",
    "huggingface_hub",
    "hf_xet",
    "safetensors",
    "timm",
    "facenet_pytorch",
    "silero_vad",
    "skimage",
    "sklearn",
    "scipy",
    "pandas",
    "matplotlib",
    "IPython",
    "pytest",
    "_pytest",
    "ruff",
    "mypy",
    "setuptools",
    "pkg_resources",
    "pip",
    "tkinter",
    "PyInstaller",
    # optional engines, never bundled: `edge-mm serve --engine ray` runs from a Python environment
    "edge_mm.ray_serve",
    "ray",
    "a2wsgi",
    "onnx",  # export and quantization run at build time; the runtime only loads the graph with onnxruntime
    "onnxruntime.quantization",
    "onnxruntime.transformers",
    "onnxruntime.tools",
)
# torch modules the runtime never loads (checked: sys.modules after serving every route and
# `edge-mm check`): the compiler stack (dynamo/inductor and what it needs: sympy, triton),
# ONNX export, tensorboard and benchmarks. (torch.testing._internal stays: torch.utils.checkpoint imports it.)
UNUSED_TORCH = (
    "torch._dynamo",
    "torch._inductor",
    "torch._lazy",
    "torch._numpy",
    "torch.onnx",
    "torch.contrib",
    "torch.utils.tensorboard",
    "torch.utils.benchmark",
    "torch.utils.bottleneck",
    "functorch",
    "triton",
    "sympy",
    "mpmath",
    "networkx",
)
# Files under torch/ the runtime needs none of: C++ headers, CMake files, test programs and libraries.
UNUSED_TORCH_FILES = (
    "torch/include/",
    "torch/share/",
    "torch/bin/",
    "torch/test/",
    "torch/lib/libjitbackend_test.so",
    "torch/lib/libtorchbind_test.so",
    "torch/lib/libbackend_with_compiler.so",
    "torch/lib/libaoti_custom_ops.so",
)
KEEP_TORCH_FILES = ("torch/bin/torch_shm_manager",)  # torch.multiprocessing's shared-memory helper


# The lite flavour carries no torch and no PyAV (video decoding) at all, even where installed; nor
# PyYAML (only numpy's show_config imports it).
LITE_EXCLUDES = ("torch", "av", "yaml")
FLAVOURS = ("cpu", "cuda", "lite")
VENVS = {"cpu": ROOT / ".venv-cpu", "lite": ROOT / ".venv-lite"}  # the interpreter each flavour is built with
# The CUDA bundle's onnxruntime: onnxruntime-gpu (CPU and CUDA execution providers), installed with
# pip --target here and put first on PyInstaller's path, so .venv keeps the CPU package its tests use.
ORT_GPU_DIR = ROOT / "build" / "ort-gpu"
ORT_GPU_REQUIREMENTS = ROOT / "requirements" / "cuda-ort.txt"


def excluded_modules(flavour: str | None = None) -> list[str]:
    return [*BUILD_ONLY, *UNUSED_TORCH, *(LITE_EXCLUDES if flavour == "lite" else ())]


def is_unused_file(dest: str) -> bool:
    """True for a bundled file (destination path inside the bundle) the runtime never opens."""
    dest = dest.replace(os.sep, "/")
    if dest.startswith(KEEP_TORCH_FILES):
        return False
    unused_dirs = [m.replace(".", "/") + "/" for m in excluded_modules()]
    return dest.startswith(UNUSED_TORCH_FILES) or dest.startswith(tuple(unused_dirs))


def is_runtime_module(name: str) -> bool:
    """The edge_mm modules the bundle carries: all of them except the build-time package and Ray Serve's."""
    return not any(name == p or name.startswith(p + ".") for p in ("edge_mm.build", "edge_mm.ray_serve"))


def bundle_flavour() -> str:
    """``cpu`` for a CPU-only torch build, ``cuda`` for a CUDA-capable one, ``lite`` without torch
    (the interpreter running this)."""
    try:
        import torch
    except ImportError:
        return "lite"

    return "cuda" if torch.version.cuda is not None and "+cpu" not in torch.__version__ else "cpu"


# ---------------------------------------------------------------- settings.toml


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"cannot write {value!r} to settings.toml")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) to settings.toml")


def settings_toml(settings: Settings, artifacts_dir: str) -> str:
    """``settings`` as a TOML file: non-default scalars, ``artifacts_dir`` as given, every model.

    ``[build]`` is left out: the bundle builds nothing.
    """
    lines = ["# Written by `edge-mm package`. Paths are relative to this file; EDGE_MM_* variables override.", ""]
    sections: dict[str, list[str]] = {}
    for s in SETTINGS:
        section, name = s.key.split(".")
        if section == "build":
            continue
        value = artifacts_dir if s.key == "runtime.artifacts_dir" else settings[s.key]
        if s.key == "runtime.artifacts_dir" or value != s.default:
            sections.setdefault(section, []).append(f"{name} = {_toml_value(value)}")
    for section, body in sections.items():
        lines += [f"[{section}]", *body, ""]
    for model in settings.models:
        lines.append("[[models]]")
        for m in MODEL_SETTINGS:
            value = getattr(model, m.key)
            if m.default is None or value != (tuple(m.default) if isinstance(m.default, list) else m.default):
                lines.append(f"{m.key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- the payload beside the executable


def _artifacts_ready(settings: Settings) -> str | None:
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
    """The lite bundle keeps each model's ONNX Runtime variants only (the int8 one and its fp32-compute fallback);
    a model served by TorchScript is refused."""
    if cpu_backend != "onnxruntime" or ORT_VARIANT not in variants:
        raise ConfigError(
            f"model {name!r} is served by {cpu_backend} on CPU; the lite bundle has no torch: set "
            'artifact_backend = "onnxruntime" for it (settings.lite.toml) and build again, or leave it out'
        )
    return {k: v for k, v in variants.items() if k in (ORT_VARIANT, ORT_7BIT_VARIANT, ORT_FP32_VARIANT)}


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


# ---------------------------------------------------------------- edge-mm package


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
    if flavour is not None and flavour not in FLAVOURS:
        raise ConfigError(f"--flavour {flavour!r} is not one of {', '.join(FLAVOURS)}")
    if python is None and flavour in VENVS:
        python = str(VENVS[flavour] / "bin" / "python")
        if not Path(python).is_file():
            raise ConfigError(f"{python} is missing: run scripts/venv_{flavour}.sh (or make bundle-{flavour})")
    if getattr(sys, "frozen", False) or not SPEC.is_file():
        raise ConfigError(f"'edge-mm package' runs from a source checkout ({SPEC.name} not found next to edge_mm/)")
    why = _artifacts_ready(settings)
    if why is not None:
        if not _has_transformers():
            raise ConfigError(f"{why}; build the artifacts first with the default environment: make build")
        from edge_mm.build.pipeline import build_all

        print(f"edge-mm package: {why}; building artifacts first", flush=True)
        build_all(settings)
    dist = (dist or ROOT / "dist").resolve()
    python = python or sys.executable
    work = ROOT / "build" / "pyinstaller"
    work.mkdir(parents=True, exist_ok=True)
    config = work / "package-settings.toml"  # the settings to bundle, pointing at the built artifacts
    config.write_text(settings_toml(settings, str(settings.path("runtime.artifacts_dir"))), encoding="utf-8")
    spec_args = ["--config", str(config)] + (["--onefile"] if onefile else []) + ([] if excludes else ["--no-excludes"])
    cmd = [
        python, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
        "--distpath", str(dist), "--workpath", str(work / f"{'onefile' if onefile else 'onedir'}-{_env_name(python)}"),
        str(SPEC), "--", *spec_args,
    ]  # fmt: skip
    print("edge-mm package: " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONNOUSERSITE="1")
    if flavour == "cuda":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ort_gpu_overlay(python)), env.get("PYTHONPATH")]))
    result = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        raise ConfigError(f"PyInstaller failed (exit {result.returncode}); its output is above")
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
