"""Activation smoothing before int8 (SmoothQuant, Xiao et al., 2023), for dynamic quantization.

Dynamic int8 quantizes each Linear's input with one scale for the whole tensor, so a few
outlier channels (e.g. after GELU in BERT's feed-forward) crush the resolution of all the
others. Smoothing divides input channel j by s_j and multiplies weight column j by s_j:
the fp32 result is unchanged, the outliers move into the weights, which int8 quantizes
per output channel. s_j = max|x_j|^alpha / max|W_:,j|^(1 - alpha), from calibration data.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from edge_mm.build.progress import bar
from edge_mm.build.quantize import is_kept


class SmoothedLinear(nn.Module):
    """``linear(x * inv_scale)`` with the scale folded into ``linear``'s weight columns."""

    inv_scale: torch.Tensor  # (in_features,) buffer

    def __init__(self, linear: nn.Linear, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("inv_scale", (1.0 / scale).to(linear.weight.dtype))
        self.linear = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
        with torch.no_grad():
            self.linear.weight.copy_(linear.weight * scale.unsqueeze(0))
            if linear.bias is not None:
                self.linear.bias.copy_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * self.inv_scale)


@torch.inference_mode()
def input_channel_max(model: nn.Module, batches: Iterable[tuple[torch.Tensor, ...]]) -> dict[str, torch.Tensor]:
    """max |x_j| per input channel of every Linear, over the calibration batches."""
    stats: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):

            def hook(_m: nn.Module, args: tuple[torch.Tensor, ...], _out: torch.Tensor, name: str = name) -> None:
                amax = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0)
                stats[name] = torch.maximum(stats[name], amax) if name in stats else amax

            hooks.append(module.register_forward_hook(hook))
    try:
        for batch in bar(batches, "smoothing: calibration", unit="batch"):
            model(*batch)
    finally:
        for h in hooks:
            h.remove()
    return stats


def smooth_linear_inputs(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, ...]], alpha: float, skip: tuple[str, ...] = ()
) -> nn.Module:
    """A copy of ``model`` whose Linear layers are wrapped in :class:`SmoothedLinear` (fp32-identical)."""
    smoothed = copy.deepcopy(model).eval()
    stats = input_channel_max(smoothed, batches)
    for name, amax in stats.items():
        if is_kept(name, skip):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = smoothed.get_submodule(parent_name) if parent_name else smoothed
        linear = getattr(parent, child)
        wmax = linear.weight.detach().abs().amax(0).clamp(min=1e-5)
        scale = (amax.clamp(min=1e-5) ** alpha / wmax ** (1 - alpha)).clamp(min=1e-2, max=1e2)
        setattr(parent, child, SmoothedLinear(linear, scale))
    return smoothed
