"""The artifact format, behind one module: TorchScript trace -> freeze -> save.

TorchScript is deprecated upstream but still the format that loads without Python
model code; if it goes, only this module and runtime/artifacts.py change.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


def trace_and_freeze(module: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> torch.jit.ScriptModule:
    """Trace ``module`` on ``example_inputs`` and freeze it (weights folded into the graph)."""
    module = module.eval()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings on shape arithmetic inside HF models
        traced = torch.jit.trace(module, example_inputs, check_trace=False, strict=False)
        return torch.jit.freeze(traced)


def save(module: torch.jit.ScriptModule, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(module, str(path))
