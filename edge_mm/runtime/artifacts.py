"""Loading artifacts (the other half of build/artifact_backend.py and build/onnx_backend.py).

A variant's ``backend`` says what loads its model file: a TorchScript module, or an
ONNX Runtime session (runtime/onnx_session.py) with the same positional call. Which
CPU variant serves is the build's choice, recorded in the manifest (``backends``).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_mm.errors import ConfigError
from edge_mm.manifest import BACKENDS, ORT_VARIANT, ModelEntry, Variant
from edge_mm.runtime.onnx_session import OnnxSession

if TYPE_CHECKING:
    import torch

_cpu_threads = 1  # intra-op threads per inference; set once at start-up by set_cpu_threads
_solo_threads = 0  # threads of a lone pass (runtime/solo.py) for the models that ask; 0: none


def set_cpu_threads(intra: int, solo: int = 0) -> None:
    """Intra-op threads per inference, for torch and for every ONNX Runtime session loaded after this;
    ``solo``: the threads of a pass that starts alone, for sessions loaded with ``solo=True``.

    torch is told now if it is loaded, else when the first TorchScript module loads: a server whose
    every model runs on ONNX Runtime never imports torch (the lite bundle has none).
    """
    global _cpu_threads, _solo_threads
    _cpu_threads = max(1, intra)
    _solo_threads = solo
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(_cpu_threads)


def load_module(path: Path, device: str) -> torch.jit.ScriptModule:
    import torch

    torch.set_num_threads(_cpu_threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript deprecation notice (torch >= 2.14)
        module = torch.jit.load(str(path), map_location=device)
    return module.eval()


def load_artifact(variant: Variant, root: Path, device: str, *, arena: bool = True, solo: bool = False) -> Any:
    """The variant's ``model`` file as a callable: ``artifact(*inputs) -> output or tuple of outputs``.

    Outputs are tensors (TorchScript) or numpy arrays (ONNX Runtime, whose path never imports torch).
    ``arena=False``: ONNX Runtime gives each run's memory back (for inputs whose size varies widely).
    ``solo``: an ONNX Runtime model whose lone passes may use every core (runtime/solo.py).
    """
    path = variant.files["model"].resolve(root)
    if variant.backend == "onnxruntime":
        return OnnxSession(path, _cpu_threads, device, arena=arena, solo_threads=_solo_threads if solo else 0)
    if variant.backend != "torchscript":
        raise ConfigError(f"{path.name}: backend {variant.backend!r} is unknown; use one of {', '.join(BACKENDS)}")
    return load_module(path, device)


def serving_variant(entry: ModelEntry, device_variant: str, setting: str = "auto") -> tuple[str, str]:
    """(variant key, why) for a model whose device policy chose ``device_variant``.

    The CUDA variant serves as built (TorchScript fp16 today). On CPU the build's choice serves; ``setting`` is the model's
    ``artifact_backend`` now, and a manifest built for another setting must be rebuilt.
    """
    if device_variant != "cpu":
        backend = entry.variants[device_variant].backend
        return device_variant, f"{'TorchScript' if backend == 'torchscript' else 'ONNX Runtime'}: the CUDA path"
    built_for = entry.backends.get("setting")
    if (built_for is None and setting == "onnxruntime") or (built_for is not None and built_for != setting):
        raise ConfigError(
            f"artifact_backend = {setting} in settings, but the artifacts were built for "
            f"{built_for or 'TorchScript only'}; run 'edge-mm build' again"
        )
    backend = entry.cpu_backend
    reason = entry.backends.get("reason") or (
        "TorchScript: the artifacts record no other CPU backend"
        if backend == "torchscript"
        else f"{backend}: the one CPU form the build wrote"
    )
    return (ORT_VARIANT if backend == "onnxruntime" else "cpu"), reason
