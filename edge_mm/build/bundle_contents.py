"""What the executable bundle carries: the modules and files PyInstaller leaves out, and its flavour.

``edge_mm.spec`` reads these lists; this module imports nothing of edge_mm, torch or PyInstaller
at import time (scripts/runtime_modules.py imports it too, to check the lists against a running server).
"""

from __future__ import annotations

import os

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
