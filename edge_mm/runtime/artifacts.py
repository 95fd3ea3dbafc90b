"""Loading TorchScript artifacts (the other half of build/artifact_backend.py)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch


def configure_jit() -> None:
    """Serve varied shapes without re-specialising: the profiling executor re-optimises per
    new input shape, which made a first batch of 8 take 145 ms instead of 21 ms (measured)."""
    torch._C._jit_set_profiling_executor(False)
    torch._C._jit_set_profiling_mode(False)


def load_module(path: Path, device: str) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript deprecation notice (torch >= 2.14)
        module = torch.jit.load(str(path), map_location=device)
    return module.eval()
