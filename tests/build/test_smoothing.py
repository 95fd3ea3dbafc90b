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


def tiny_bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    return BertModel(cfg, add_pooling_layer=False).eval()


def bert_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(1, 64, (4, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    return ids, mask


def test_attention_smoothing_is_fp32_identical_with_one_multiply_per_block():
    from edge_mm.build.smoothing import ScaledInput, smooth_attention

    model = tiny_bert()
    ids, mask = bert_batch()
    smoothed = smooth_attention(model, [(ids, mask)], alpha=0.8)
    for layer in smoothed.encoder.layer:
        assert isinstance(layer.attention.self, ScaledInput)  # one multiply for query, key and value
        assert all(type(getattr(layer.attention.self.module, p)) is nn.Linear for p in ("query", "key", "value"))
        assert type(layer.attention.output.dense) is nn.Linear  # folded into value: no multiply
        assert isinstance(layer.intermediate.dense, SmoothedLinear)
        assert isinstance(layer.output.dense, SmoothedLinear)
    with torch.inference_mode():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
        got = smoothed(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(ref, got, atol=1e-5)
    # the folded weights really moved: value rows and output-projection columns differ from the original
    assert not torch.allclose(
        model.encoder.layer[0].attention.self.value.weight, smoothed.encoder.layer[0].attention.self.module.value.weight
    )


def test_a_kept_layer_leaves_its_attention_block_to_per_layer_smoothing():
    from edge_mm.build.smoothing import ScaledInput, smooth_attention

    model = tiny_bert()
    smoothed = smooth_attention(model, [bert_batch()], alpha=0.8, skip=("encoder.layer.0.attention.output.dense",))
    first, second = smoothed.encoder.layer
    assert not isinstance(first.attention.self, ScaledInput)
    assert isinstance(first.attention.self.query, SmoothedLinear)
    assert type(first.attention.output.dense) is nn.Linear  # kept: untouched
    assert isinstance(second.attention.self, ScaledInput)
