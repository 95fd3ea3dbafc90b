"""Activation smoothing before int8 (SmoothQuant, Xiao et al., 2023), for dynamic quantization.

Dynamic int8 quantizes each Linear's input with one scale for the whole tensor, so a few
outlier channels (e.g. after GELU in BERT's feed-forward) crush the resolution of all the
others. Smoothing divides input channel j by s_j and multiplies weight column j by s_j:
the fp32 result is unchanged, the outliers move into the weights, which int8 quantizes
per output channel. s_j = max|x_j|^alpha / max|W_:,j|^(1 - alpha), from calibration data.

Each smoothed input costs one elementwise multiply in the served graph. :func:`smooth_attention`
spends fewer: BERT's query, key and value read one tensor, so they share one scale and one
multiply (and one dynamic quantization of it in ONNX Runtime); the attention output projection's
scale folds into the value projection's rows, costing nothing at run time.
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


class ScaledInput(nn.Module):
    """``module(x * inv_scale, *rest)``: one multiply in front of a block whose Linear layers all read ``x``."""

    inv_scale: torch.Tensor

    def __init__(self, module: nn.Module, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("inv_scale", 1.0 / scale)
        self.module = module

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> object:
        return self.module(x * self.inv_scale, *args, **kwargs)


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


def _scale(amax: torch.Tensor, weights: Iterable[torch.Tensor], alpha: float) -> torch.Tensor:
    """s_j for inputs whose max |x_j| is ``amax``, read by Linear layers with ``weights``."""
    wmax = torch.stack([w.detach().abs().amax(0) for w in weights]).amax(0).clamp(min=1e-5)
    return (amax.clamp(min=1e-5) ** alpha / wmax ** (1 - alpha)).clamp(min=1e-2, max=1e2)


def _wrap_linears(
    smoothed: nn.Module, stats: dict[str, torch.Tensor], alpha: float, skip: tuple[str, ...], done: set[str]
) -> nn.Module:
    for name, amax in stats.items():
        if is_kept(name, skip) or name in done:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = smoothed.get_submodule(parent_name) if parent_name else smoothed
        linear = getattr(parent, child)
        setattr(parent, child, SmoothedLinear(linear, _scale(amax, [linear.weight], alpha)))
    return smoothed


def smooth_linear_inputs(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, ...]], alpha: float, skip: tuple[str, ...] = ()
) -> nn.Module:
    """A copy of ``model`` whose Linear layers are wrapped in :class:`SmoothedLinear` (fp32-identical)."""
    smoothed = copy.deepcopy(model).eval()
    return _wrap_linears(smoothed, input_channel_max(smoothed, batches), alpha, skip, set())


def _attention_blocks(model: nn.Module) -> list[tuple[str, nn.Module, list[nn.Linear], nn.Linear]]:
    """(name, self-attention, [query, key, value], output projection) of every BERT-shaped attention block.

    BERT's ``BertAttention`` holds ``self`` (query, key, value Linear layers reading the one
    hidden-states tensor, value feeding the context) and ``output.dense`` (reading that context).
    """
    found = []
    for name, module in model.named_modules():
        attn, out = getattr(module, "self", None), getattr(getattr(module, "output", None), "dense", None)
        qkv = [getattr(attn, p, None) for p in _QKV]
        if isinstance(attn, nn.Module) and isinstance(out, nn.Linear) and all(isinstance(x, nn.Linear) for x in qkv):
            found.append((name, attn, [x for x in qkv if isinstance(x, nn.Linear)], out))
    return found


_QKV = ("query", "key", "value")


@torch.no_grad()
def smooth_attention(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, ...]], alpha: float, skip: tuple[str, ...] = ()
) -> nn.Module:
    """Like :func:`smooth_linear_inputs` (fp32-identical), with fewer multiplies in the graph.

    In each BERT-shaped attention block, query/key/value share one scale applied once in front
    of the self-attention (:class:`ScaledInput`), and the output projection's scale is folded into
    the value projection (context channel j is a mix of value channel j, so dividing value's row j
    by s_j divides context channel j by s_j). Blocks with a kept layer, and every other Linear,
    are smoothed as :func:`smooth_linear_inputs` does.
    """
    smoothed = copy.deepcopy(model).eval()
    stats = input_channel_max(smoothed, batches)
    done: set[str] = set()
    for name, attn, linears, out in _attention_blocks(smoothed):
        qkv = [f"{name}.self.{p}" for p in _QKV]
        out_name = f"{name}.output.dense"
        if not any(is_kept(n, skip) for n in (*qkv, out_name)) and all(n in stats for n in (*qkv, out_name)):
            value = linears[2]
            folded = _scale(stats[out_name], [out.weight], alpha)
            out.weight.mul_(folded.unsqueeze(0))
            value.weight.div_(folded.unsqueeze(1))
            if value.bias is not None:
                value.bias.div_(folded)
            shared = _scale(stats[qkv[0]], [x.weight for x in linears], alpha)
            for x in linears:
                x.weight.mul_(shared.unsqueeze(0))
            parent_name, _, child = f"{name}.self".rpartition(".")
            setattr(smoothed.get_submodule(parent_name), child, ScaledInput(attn, shared))
            done.update((*qkv, out_name))
    return _wrap_linears(smoothed, stats, alpha, skip, done)
