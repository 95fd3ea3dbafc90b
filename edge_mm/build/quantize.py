"""Dynamic int8 quantization of Linear layers, and the accuracy guard that keeps layers in fp32.

Weights are quantized per output channel: on MiniLM that lifts the mean int8-vs-fp32
cosine from 0.940 to 0.974 at the same speed (measured: bench/results/int8_layers.md; the script is in history, bench/experiments/README.md).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from edge_mm.build.progress import bar


def linear_layer_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def is_kept(name: str, keep_fp32: Sequence[str]) -> bool:
    """True when ``name`` equals a kept name or lies under a kept prefix."""
    return any(name == k or name.startswith(k + ".") for k in keep_fp32)


def quantize_linear_layers(model: nn.Module, keep_fp32: Sequence[str] = ()) -> tuple[nn.Module, list[str]]:
    """A copy of ``model`` with every Linear not in ``keep_fp32`` as dynamic int8 (per-channel weights).

    Returns (quantized model, names of the quantized layers). The input is not changed.
    """
    names = [n for n in linear_layer_names(model) if not is_kept(n, keep_fp32)]
    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    quantized = torch.ao.quantization.quantize_dynamic(
        copy.deepcopy(model).eval(), {n: qconfig for n in names}, dtype=torch.qint8
    )
    return quantized, names


# A score in [0, 1]: 0 is identical to fp32. ``passes`` says whether a model meets its targets.
Scorer = Callable[[nn.Module], float]
Passes = Callable[[nn.Module], bool]


@dataclass
class GuardResult:
    model: nn.Module
    kept_fp32: list[str]
    quantized: list[str]
    sensitivity: dict[str, float] = field(default_factory=dict)


def guard_int8(
    model: nn.Module,
    keep_fp32: Sequence[str],
    *,
    passes: Passes,
    damage: Scorer,
    auto: bool,
    progress: Callable[[str], None],
) -> GuardResult:
    """Quantize; if the targets are missed and ``auto``, keep the most damaging layers fp32 until they pass.

    A layer's damage is measured by quantizing it alone (``damage`` should use a small
    sample: it runs once per layer). Then a binary search finds the fewest of the most
    damaging layers to keep in fp32 (damage adds up roughly monotonically); if even all
    of them are needed, the result is fully fp32 and the caller reports the miss.
    """
    kept = list(keep_fp32)
    quantized, names = quantize_linear_layers(model, kept)
    if not auto or passes(quantized):
        return GuardResult(quantized, kept, names)
    progress(f"int8 misses its target; measuring the damage of {len(names)} layers one by one")
    all_linear = linear_layer_names(model)
    sensitivity = {}
    for name in bar(names, "int8 guard: layer damage", unit="layer"):
        alone, _ = quantize_linear_layers(model, [n for n in all_linear if n != name])
        sensitivity[name] = damage(alone)
    ranked = sorted(sensitivity, key=sensitivity.__getitem__, reverse=True)
    lo, hi = 1, len(ranked)  # fewest extra layers kept: somewhere in [lo, hi]
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate, cand_names = quantize_linear_layers(model, kept + ranked[:mid])
        ok = passes(candidate)
        progress(f"keeping the {mid} most sensitive layers in fp32: {'passes' if ok else 'misses'}")
        if ok:
            best, hi = (candidate, cand_names, mid), mid - 1
        else:
            lo = mid + 1
    if best is None:
        quantized, names = quantize_linear_layers(model, kept + ranked)
        return GuardResult(quantized, kept + ranked, names, sensitivity)
    return GuardResult(best[0], kept + ranked[: best[2]], best[1], sensitivity)
