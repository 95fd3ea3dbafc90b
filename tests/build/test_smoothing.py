"""Smoothing keeps fp32 outputs and makes int8 faithful when inputs have outlier channels."""

from __future__ import annotations

import torch
from torch import nn

from edge_mm.build.quantize import quantize_linear_layers
from edge_mm.build.smoothing import SmoothedLinear, smooth_linear_inputs


class OutlierNet(nn.Module):
    """Two Linears; channel 0 of the input is ~100x larger than the rest (like post-GELU outliers)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(64, 64)
        self.b = nn.Linear(64, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def data(n: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 64, generator=g)
    x[:, 0] *= 100
    return x


def test_fp32_output_is_unchanged_and_layers_are_wrapped():
    model = OutlierNet().eval()
    smoothed = smooth_linear_inputs(model, [(data(),)], alpha=0.8)
    assert isinstance(smoothed.a, SmoothedLinear)
    assert isinstance(smoothed.b, SmoothedLinear)
    x = data(8)
    assert torch.allclose(model(x), smoothed(x), atol=1e-4)
    assert isinstance(model.a, nn.Linear)  # the original is untouched


def test_skip_leaves_named_layers_alone():
    smoothed = smooth_linear_inputs(OutlierNet().eval(), [(data(),)], alpha=0.8, skip=("b",))
    assert isinstance(smoothed.a, SmoothedLinear)
    assert type(smoothed.b) is nn.Linear


def test_smoothing_reduces_int8_error_on_outlier_inputs():
    model = OutlierNet().eval()
    x = data(32)
    with torch.inference_mode():
        ref = model(x)
        plain = quantize_linear_layers(model)[0](x)
        smooth = quantize_linear_layers(smooth_linear_inputs(model, [(data(),)], alpha=0.8))[0](x)
    err_plain = (plain - ref).abs().mean()
    err_smooth = (smooth - ref).abs().mean()
    assert err_smooth < err_plain / 2
