"""The int8 guard with exact answers: a fake damage table over a 4-layer model."""

from __future__ import annotations

import torch
from torch import nn

from edge_mm.build.quantize import guard_int8, is_kept, linear_layer_names, quantize_linear_layers

DAMAGE = {"0": 0.5, "1": 0.1, "2": 0.3, "3": 0.05}


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*(nn.Linear(8, 8) for _ in range(4)))


def quantized_layers(m: nn.Module) -> list[str]:
    return [n for n, mod in m.named_modules() if isinstance(mod, torch.ao.nn.quantized.dynamic.Linear)]


def total_damage(m: nn.Module) -> float:
    return sum(DAMAGE[n] for n in quantized_layers(m))


def test_quantize_keeps_named_layers():
    q, names = quantize_linear_layers(model(), keep_fp32=["1", "3"])
    assert names == ["0", "2"] == quantized_layers(q)
    assert is_kept("encoder.layer.1.output", ["encoder.layer.1"])
    assert not is_kept("encoder.layer.10", ["encoder.layer.1"])
    assert linear_layer_names(model()) == ["0", "1", "2", "3"]


def test_guard_keeps_the_fewest_most_damaging_layers():
    result = guard_int8(
        model(), [], passes=lambda m: total_damage(m) < 0.2, damage=total_damage, auto=True, progress=lambda _: None
    )
    assert result.kept_fp32 == ["0", "2"]  # 0.1 + 0.05 left quantized
    assert result.quantized == ["1", "3"]
    assert result.sensitivity == DAMAGE


def test_guard_without_auto_returns_plain_int8():
    result = guard_int8(
        model(), ["3"], passes=lambda m: False, damage=total_damage, auto=False, progress=lambda _: None
    )
    assert result.kept_fp32 == ["3"]
    assert result.quantized == ["0", "1", "2"]


def test_guard_gives_up_with_everything_fp32():
    result = guard_int8(model(), [], passes=lambda m: False, damage=total_damage, auto=True, progress=lambda _: None)
    assert sorted(result.kept_fp32) == ["0", "1", "2", "3"]
    assert result.quantized == []


def test_quantized_model_stays_close():
    m = model().eval()
    q, _ = quantize_linear_layers(m)
    x = torch.randn(4, 8)
    assert torch.allclose(m(x), q(x), atol=0.05)
