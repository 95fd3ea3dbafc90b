"""EfficientNet-Lite0 in plain torch, for loading the shipped ImageNet state_dict.

Build-time only: the runtime loads the traced artifact, never this module.

Lite0 is EfficientNet-B0 without squeeze-excitation, with ReLU6 instead of swish,
and with the stem (32) and head (1280) widths kept fixed. Convolutions use
TensorFlow "SAME" padding and BatchNorm eps 1e-3, as in the TF checkpoints the
weights came from. Parameter names follow the lukemelas ``efficientnet_pytorch``
layout (``_conv_stem``, ``_bn0``, ``_blocks.N._depthwise_conv``, ``_fc``...), so
``load_state_dict(strict=True)`` accepts the shipped file as is.

Input: ``(N, 3, 224, 224)`` float32 scaled to ``[-1, 1]`` (``(x/255 - 0.5)/0.5``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
IMAGE_SIZE = 224
NUM_CLASSES = 1000
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
DROPOUT = 0.2


@dataclass(frozen=True)
class StageSpec:
    """One row of the B0 block table."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    out_channels: int


# EfficientNet-B0 block table; Lite0 uses it unscaled (width and depth multipliers 1.0).
B0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 1, 16),
    StageSpec(2, 3, 2, 6, 24),
    StageSpec(2, 5, 2, 6, 40),
    StageSpec(3, 3, 2, 6, 80),
    StageSpec(3, 5, 1, 6, 112),
    StageSpec(4, 5, 2, 6, 192),
    StageSpec(1, 3, 1, 6, 320),
)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding ``(before, after)`` in pixels for one spatial dimension.

    The output has ``ceil(size / stride)`` positions; any odd total goes after.
    """
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """Bias-free ``nn.Conv2d`` with TF "SAME" padding.

    In eager mode the padding is computed from each input's height and width, so
    any input size works. Under ``torch.jit.trace`` the padding precomputed for
    ``input_size`` (this layer's input side at the model's ``image_size``) is used,
    so the trace holds constants and no shape arithmetic: trace at ``image_size``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        groups: int = 1,
        input_size: int = IMAGE_SIZE,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=False)
        before, after = same_padding(input_size, kernel_size, stride)
        # F.pad order: (left, right, top, bottom).
        self.static_pad: tuple[int, int, int, int] = (before, after, before, after)
        self.output_size = math.ceil(input_size / stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            pad = self.static_pad
        else:
            k, s = self.kernel_size[0], self.stride[0]
            top, bottom = same_padding(x.shape[-2], k, s)
            left, right = same_padding(x.shape[-1], k, s)
            pad = (left, right, top, bottom)
        if any(pad):
            x = F.pad(x, pad)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConvBlock(nn.Module):
    """Inverted residual: [1x1 expand] -> kxk depthwise -> 1x1 project, no SE.

    Identity skip when ``stride == 1`` and ``in_channels == out_channels``
    (no drop-connect: the model is only used for inference).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel: int,
        stride: int,
        expand: int,
        input_size: int,
    ) -> None:
        super().__init__()
        mid = in_channels * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(in_channels, mid, 1, input_size=input_size)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid, input_size=input_size)
        self._bn1 = _bn(mid)
        self.output_size = self._depthwise_conv.output_size
        self._project_conv = Conv2dSame(mid, out_channels, 1, input_size=self.output_size)
        self._bn2 = _bn(out_channels)
        self.has_skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if self.has_skip:
            y = y + x
        return y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 ImageNet classifier.

    ``forward``: ``(N, 3, H, W)`` float32 in ``[-1, 1]`` -> logits ``(N, 1000)``.
    ``forward_features``: same input -> globally average-pooled ``(N, 1280)``
    features (before dropout and ``_fc``).
    ``image_size`` only sets the padding a trace bakes in (see :class:`Conv2dSame`).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        self.image_size = image_size
        self._conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, stride=2, input_size=image_size)
        self._bn0 = _bn(STEM_CHANNELS)
        size = self._conv_stem.output_size
        blocks: list[nn.Module] = []
        in_channels = STEM_CHANNELS
        for stage in B0_STAGES:
            for i in range(stage.repeats):
                block = MBConvBlock(
                    in_channels,
                    stage.out_channels,
                    kernel=stage.kernel,
                    stride=stage.stride if i == 0 else 1,
                    expand=stage.expand,
                    input_size=size,
                )
                blocks.append(block)
                size = block.output_size
                in_channels = stage.out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(in_channels, HEAD_CHANNELS, 1, input_size=size)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._dropout = nn.Dropout(DROPOUT)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> pooled features ``(N, 1280)`` float32."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, 1280)`` -> logits ``(N, num_classes)``."""
        logits: torch.Tensor = self._fc(self._dropout(features))
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` -> logits ``(N, num_classes)`` (no softmax)."""
        return self.classify(self.forward_features(x))


class LogitsAndFeatures(nn.Module):
    """One graph returning both outputs, so a single trace serves classify and embed.

    ``forward(x)`` -> ``(logits (N, 1000), features (N, 1280))``; identical to
    ``model(x)`` and ``model.forward_features(x)``.
    """

    def __init__(self, model: EfficientNetLite0) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.forward_features(x)
        return self.model.classify(features), features


def load_efficientnet_lite0(path: str | Path, *, image_size: int = IMAGE_SIZE) -> EfficientNetLite0:
    """Load the shipped state_dict (strict) into a CPU model in eval mode."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    num_classes = int(state["_fc.weight"].shape[0])
    model = EfficientNetLite0(num_classes=num_classes, image_size=image_size)
    model.load_state_dict(state, strict=True)
    return model.eval()
