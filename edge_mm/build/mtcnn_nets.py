"""MTCNN P-, R- and O-Net (build time only).

The three small conv nets of MTCNN (Zhang et al. 2016) with parameter names that
match the state_dicts shipped in the ``facenet-pytorch`` wheel
(``facenet_pytorch/data/{pnet,rnet,onet}.pt``), so they load with ``strict=True``.
Every ``forward`` returns a tuple of tensors, so the nets trace and script.

Inputs are float32 RGB images scaled to about [-1, 1] (``(x - 127.5) / 128``).

PNet is fully convolutional and has no shape-dependent Python code, so a trace at
one image size runs at any other (checked in ``tests/build/test_mtcnn_nets.py``).
:func:`export_mtcnn_nets` still scripts it, so nothing depends on that property.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["ONet", "PNet", "RNet", "export_mtcnn_nets", "load_mtcnn_nets"]


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


class RNet(nn.Module):
    """Refinement net.

    ``forward(x: (N, 3, 24, 24) float32) -> (reg: (N, 4), prob: (N, 2))``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # The weights were converted from Caffe/TF: flatten in (W, H, C) order.
        x = x.permute(0, 3, 2, 1).flatten(1)
        x = self.prelu4(self.dense4(x))
        prob = torch.softmax(self.dense5_1(x), dim=1)
        reg = self.dense5_2(x)
        return reg, prob


class ONet(nn.Module):
    """Output net.

    ``forward(x: (N, 3, 48, 48) float32)
    -> (reg: (N, 4), landmarks: (N, 10), prob: (N, 2))``; ``landmarks`` holds
    5 x-coordinates then 5 y-coordinates, as fractions of the box.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).flatten(1)
        x = self.prelu5(self.dense5(x))
        prob = torch.softmax(self.dense6_1(x), dim=1)
        reg = self.dense6_2(x)
        landmarks = self.dense6_3(x)
        return reg, landmarks, prob


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
