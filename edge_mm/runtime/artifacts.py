"""Loading TorchScript artifacts (the other half of build/artifact_backend.py)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch


def load_module(path: Path, device: str) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript deprecation notice (torch >= 2.14)
        module = torch.jit.load(str(path), map_location=device)
    return module.eval()
