"""MTCNN P-, R- and O-Net (build time only).

The three small conv nets of MTCNN (Zhang et al. 2016) with parameter names that
match the state_dicts shipped in the ``facenet-pytorch`` wheel
(``facenet_pytorch/data/{pnet,rnet,onet}.pt``), so they load with ``strict=True``.
Every ``forward`` returns a tuple of tensors; PNet is scripted, RNet and ONet are traced
(TorchScript variant), and all three export to ONNX (the ONNX Runtime variant,
:func:`export_mtcnn_onnx`).

Inputs are float32 RGB images scaled to about [-1, 1] (``(x - 127.5) / 128``).

PNet is fully convolutional and has no shape-dependent Python code, so a trace at
one image size runs at any other (checked in ``tests/build/test_mtcnn_nets.py``).
:func:`export_mtcnn_nets` still scripts it, so nothing depends on that property.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["NET_IO", "ONet", "PNet", "RNet", "export_mtcnn_nets", "export_mtcnn_onnx", "load_mtcnn_nets"]

# Each net's ONNX input and output names, in the order forward takes and returns them.
NET_IO = {
    "pnet": (["image"], ["reg", "prob"]),
    "rnet": (["crops"], ["reg", "prob"]),
    "onet": (["crops"], ["reg", "landmarks", "prob"]),
}


class PNet(nn.Module):
    """Proposal net, fully convolutional, stride 2, 12x12 receptive field.

    ``forward(x: (N, 3, H, W) float32) -> (reg: (N, 4, h, w), prob: (N, 2, h, w))``
    with ``h = ceil((H - 2) / 2) - 4`` (likewise ``w``); ``prob[:, 1]`` is the face
    probability of the 12x12 window at ``(2*i, 2*j)``; ``reg`` holds box offsets
    in units of the window size.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        prob = torch.softmax(self.conv4_1(x), dim=1)
        reg = self.conv4_2(x)
        return reg, prob


Stage = tuple[int, int, int, tuple[int, int] | None]  # in channels, out channels, kernel, (pool kernel, stride)


class _StagedNet(nn.Module):
    """``conv{i} -> prelu{i} [-> pool{i}]`` stages, named as in the shipped state_dicts, then
    flattened in (W, H, C) order: the weights were converted from Caffe/TF. Traced, not scripted."""

    def __init__(self, stages: list[Stage]) -> None:
        super().__init__()
        self._stage_names: list[str] = []
        for i, (cin, cout, kernel, pool) in enumerate(stages, start=1):
            self.add_module(f"conv{i}", nn.Conv2d(cin, cout, kernel_size=kernel))
            self.add_module(f"prelu{i}", nn.PReLU(cout))
            self._stage_names += [f"conv{i}", f"prelu{i}"]
            if pool is not None:
                self.add_module(f"pool{i}", nn.MaxPool2d(*pool, ceil_mode=True))
                self._stage_names.append(f"pool{i}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for name in self._stage_names:
            x = getattr(self, name)(x)
        return x.permute(0, 3, 2, 1).flatten(1)


class RNet(_StagedNet):
    """Refinement net.

    ``forward(x: (N, 3, 24, 24) float32) -> (reg: (N, 4), prob: (N, 2))``.
    """

    def __init__(self) -> None:
        super().__init__([(3, 28, 3, (3, 2)), (28, 48, 3, (3, 2)), (48, 64, 2, None)])
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu4(self.dense4(self.features(x)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(_StagedNet):
    """Output net.

    ``forward(x: (N, 3, 48, 48) float32)
    -> (reg: (N, 4), landmarks: (N, 10), prob: (N, 2))``; ``landmarks`` holds
    5 x-coordinates then 5 y-coordinates, as fractions of the box.
    """

    def __init__(self) -> None:
        super().__init__([(3, 32, 3, (3, 2)), (32, 64, 3, (3, 2)), (64, 64, 3, (2, 2)), (64, 128, 2, None)])
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.prelu5(self.dense5(self.features(x)))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


def load_mtcnn_nets(data_dir: str | Path) -> tuple[PNet, RNet, ONet]:
    """Load ``{pnet,rnet,onet}.pt`` from ``data_dir`` strictly, in eval mode.

    ``data_dir`` is e.g. ``build/models/facenet_pytorch/data``. Raises
    ``FileNotFoundError`` when a file is missing and ``RuntimeError`` when its keys
    or shapes do not match.
    """
    data_dir = Path(data_dir)
    nets = (PNet(), RNet(), ONet())
    for name, net in zip(("pnet", "rnet", "onet"), nets, strict=True):
        state = torch.load(data_dir / f"{name}.pt", map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        net.eval()
    return nets


def export_mtcnn_nets(
    pnet: PNet, rnet: RNet, onet: ONet
) -> tuple[torch.jit.ScriptModule, torch.jit.ScriptModule, torch.jit.ScriptModule]:
    """TorchScript versions of the three nets, ready for ``torch.jit.save``.

    PNet is scripted (any input size without relying on trace generality); RNet
    and ONet are traced at batch 2 (their input size is fixed; batch is dynamic).
    """
    with torch.no_grad():
        p = torch.jit.script(pnet.eval())
        r = torch.jit.trace(rnet.eval(), torch.zeros(2, 3, 24, 24))
        o = torch.jit.trace(onet.eval(), torch.zeros(2, 3, 48, 48))
    return p, r, o


class ChannelPReLU(nn.Module):
    """PReLU of a conv feature map as ``(1 - a) * relu(x) + a * x``, the per-channel scales as
    inference-mode BatchNorm. Same function; in ONNX Runtime the whole conv stack then stays in
    its blocked (NCHWc) layout, where a PRelu node forces a reorder out and back in around it:
    P-Net ran about 25% faster at 289x385 (measured, onnxruntime 1.32, one thread)."""

    def __init__(self, prelu: nn.PReLU) -> None:
        super().__init__()
        slope = prelu.weight.detach().float()
        self.relu_part = _channel_scale(1.0 - slope)
        self.linear_part = _channel_scale(slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_part(torch.relu(x)) + self.linear_part(x)


def _channel_scale(scale: torch.Tensor) -> nn.BatchNorm2d:
    """``x * scale`` per channel, as a BatchNorm2d in inference mode (mean 0, variance 1, eps 0)."""
    bn = nn.BatchNorm2d(scale.numel(), eps=0.0)
    zeros, ones = torch.zeros_like(scale), torch.ones_like(scale)
    state = {"weight": scale, "bias": zeros, "running_mean": zeros, "running_var": ones}
    bn.load_state_dict(state | {"num_batches_tracked": torch.tensor(0)})
    return bn.eval()


def onnx_ready(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with the PReLUs of its conv stages as :class:`ChannelPReLU`."""
    import copy

    ready = copy.deepcopy(net).eval()
    for name, module in list(ready.named_children()):
        conv_stage = isinstance(getattr(ready, name.replace("prelu", "conv"), None), nn.Conv2d)
        if isinstance(module, nn.PReLU) and conv_stage:
            setattr(ready, name, ChannelPReLU(module).eval())
    return ready


def export_mtcnn_onnx(pnet: PNet, rnet: RNet, onet: ONet, out_dir: Path) -> dict[str, Path]:
    """fp32 ONNX files ``{pnet,rnet,onet}.onnx`` in ``out_dir`` -> their paths by net name.

    Every axis that varies at run time is dynamic: the batch of all three, and P-Net's
    height and width (one pyramid level per call) with its output maps'. Conv-stage PReLUs
    are exported as :class:`ChannelPReLU`.
    """
    from edge_mm.build.onnx_backend import export

    batch = {0: "batch"}
    maps = {0: "batch", 2: "height", 3: "width"}
    paths = {}
    for name, net, example, axes in (
        ("pnet", pnet, torch.zeros(1, 3, 61, 77), maps),
        ("rnet", rnet, torch.zeros(2, 3, 24, 24), batch),
        ("onet", onet, torch.zeros(2, 3, 48, 48), batch),
    ):
        inputs, outputs = NET_IO[name]
        dynamic = {n: axes for n in inputs} | {n: (axes if name == "pnet" else batch) for n in outputs}
        paths[name] = export(onnx_ready(net), (example,), out_dir / f"{name}.onnx", inputs, outputs, dynamic)
    return paths
