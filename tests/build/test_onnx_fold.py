"""Zero pads folded into the convolutions they feed: exact, and only where it is."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from edge_mm.build import onnx_backend, onnx_fold


class Padded(nn.Module):
    """TensorFlow-style "same" pads (asymmetric, zero) before convs, and pads that must stay."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.same = nn.ZeroPad2d((0, 1, 0, 1))  # left, right, top, bottom
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.depthwise_pad = nn.ZeroPad2d(2)
        self.depthwise = nn.Conv2d(8, 8, 5, groups=8, padding=1)  # its own pads add to the folded ones
        self.ones = nn.ConstantPad2d(1, 1.0)  # not zero: stays
        self.reflect = nn.ReflectionPad2d(1)  # not constant: stays
        self.last = nn.Conv2d(8, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise(self.depthwise_pad(torch.relu(self.conv(self.same(x)))))
        return self.last(self.reflect(self.ones(y)))


def _pads(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node if n.op_type == "Pad"]


def test_zero_pads_fold_into_convs_and_the_answers_stay_the_same(tmp_path):
    model = Padded().eval()
    x = torch.randn(2, 3, 17, 19)
    raw = tmp_path / "raw.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's notice
        torch.onnx.export(model, (x,), str(raw), input_names=["x"], output_names=["y"], dynamo=False, opset_version=17)
    assert len(_pads(raw)) == 4
    assert onnx_fold.fold_pads_into_convs(raw) == 2
    assert len(_pads(raw)) == 2  # the constant-1 and the reflection pads stay
    convs = [n for n in onnx.load(str(raw)).graph.node if n.op_type == "Conv"]
    pads = [next(list(a.ints) for a in c.attribute if a.name == "pads") for c in convs]
    assert pads[0] == [0, 0, 1, 1]  # top, left, bottom, right: ZeroPad2d((0, 1, 0, 1))
    assert pads[1] == [3, 3, 3, 3]  # its own 1 plus the folded 2
    got = ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    with torch.inference_mode():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert onnx_fold.fold_pads_into_convs(raw) == 0  # nothing left to fold: the file is not rewritten


def test_the_build_export_folds_them(tmp_path):
    """onnx_backend.export, which every ONNX candidate goes through, leaves no foldable pad."""
    model = Padded().eval()
    x = torch.randn(1, 3, 16, 16)
    path = onnx_backend.export(model, (x,), tmp_path / "m.onnx", ["x"], ["y"], {"x": {0: "batch"}})
    assert len(_pads(path)) == 2
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    with torch.inference_mode():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-5)
