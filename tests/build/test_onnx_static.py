"""Static int8 ONNX graphs: the calibration reader, the calibration and held-out photos, and the
candidate's gate on a tiny conv net (applied when it meets the targets, the fp32 graph kept when not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from onnxruntime.quantization import CalibrationDataReader
from PIL import Image
from torch import nn

from edge_mm.build import onnx_backend, onnx_static
from edge_mm.build.manifest_entry import sample_images
from edge_mm.config import ModelSpec
from edge_mm.manifest import ORT_7BIT_VARIANT, ORT_VARIANT, sha256_file
from edge_mm.media.image_preprocess import ImagePreprocess


def test_reader_feeds_every_row_once_in_batches_and_rewinds():
    pixels = np.arange(5 * 3 * 2 * 2, dtype=np.float32).reshape(5, 3, 2, 2)
    reader = onnx_static.CalibrationReader("pixel_values", pixels, batch=2)
    assert isinstance(reader, CalibrationDataReader)  # what quantize_static asks for (its subclass hook)
    assert len(reader) == 3
    batches = list(iter(reader.get_next, None))
    assert [set(b) for b in batches] == [{"pixel_values"}] * 3
    assert [b["pixel_values"].shape[0] for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([b["pixel_values"] for b in batches]), pixels)
    assert reader.get_next() is None
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["pixel_values"], pixels[:2])
    reader.rewind()
    assert [b["pixel_values"].shape[0] for b in reader] == [2, 2, 1]  # iterable, as onnxruntime's readers


def test_reader_hands_float32_and_refuses_a_non_batch():
    reader = onnx_static.CalibrationReader("x", np.zeros((2, 3, 4, 4), dtype=np.float64))
    assert reader.get_next()["x"].dtype == np.float32
    with pytest.raises(ValueError, match="non-empty"):
        onnx_static.CalibrationReader("x", np.zeros((0, 3, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="non-empty"):
        onnx_static.CalibrationReader("x", np.zeros((3, 4, 4), dtype=np.float32))


def test_augment_is_deterministic_crops_and_mirrors():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 100, 3), dtype=np.uint8))
    first, second = onnx_static.augment(image), onnx_static.augment(image)
    assert len(first) == 2 * len(onnx_static.CROPS) == 8
    assert [a.tobytes() for a in first] == [b.tobytes() for b in second]
    assert first[0].tobytes() == image.tobytes()  # the whole image comes first
    assert np.array_equal(np.asarray(first[4]), np.asarray(image)[:, ::-1])  # then the mirror
    assert first[1].size == (80, 48)  # 0.8 x 0.8 corner crop


def test_calibration_and_heldout_photos_do_not_overlap():
    calibration, held = onnx_static.calibration_images(), onnx_static.heldout_images()
    assert len(calibration) == 32
    assert len(held) == 8 * len(onnx_static.HELDOUT_NAMES) == 24
    seen = {a.tobytes() for a in calibration}
    assert not any(h.tobytes() in seen for h in held)
    originals = {s.tobytes() for s in sample_images()}
    assert originals <= seen  # every sample photo is calibrated on, whole


class TinyConvNet(nn.Module):
    """ReLU6 conv net -> (logits, pooled features), the image classifiers' contract."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU6(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU6()
        )
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x).mean((2, 3))
        return self.head(features), features


PRE = ImagePreprocess(resize_short=40, crop=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bilinear")


def _ok(forward: Any) -> tuple[dict[str, Any], list[str]]:
    """No fp32 checks here: they are onnx_backend's, tested there."""
    return {}, []


def _fp32_candidate(model: nn.Module, out: Path, threads: int = 1) -> onnx_backend.OnnxBuild:
    x = PRE(sample_images())
    return onnx_backend.build_candidate(
        model,
        (x,),
        out / "cpu.onnx",
        (["pixel_values"], ["logits", "features"]),
        {"pixel_values": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}},
        keep_fp32=None,
        check_fp32=_ok,
        fidelity=_ok,
        threads=threads,
        strict=True,
    )


def _spec(**targets: float) -> ModelSpec:
    return ModelSpec(name="tiny", task="image-classification", source="tiny", **targets)  # type: ignore[arg-type]


def test_candidate_is_static_int8_qdq_when_it_meets_the_targets(tmp_path):
    model = TinyConvNet().eval()
    fp32 = _fp32_candidate(model, tmp_path)
    got, record = onnx_static.image_candidate(
        _spec(min_top1_agreement=0.5, max_prob_diff=0.5), model, PRE, fp32, tmp_path, 1, lambda _: None
    )
    assert record["applied"] is True
    assert record["method"] == onnx_static.CALIBRATION_METHOD
    assert record["calibration_images"] == 32
    assert record["heldout_images"] == 24
    assert got.variant is not None
    assert got.variant.dtype == "int8-static"
    assert got.variant.backend == "onnxruntime"
    assert got.candidate.variant == ORT_VARIANT
    assert got.candidate.passes
    served = record if record["served_on_build_cpu"] == ORT_VARIANT else record["seven_bit"]  # this CPU's form
    assert got.candidate.fidelity == served["heldout_vs_fp32"]
    path = tmp_path / "cpu.onnx"
    assert got.variant.files["model"].sha256 == sha256_file(path)
    ops = onnx_static.count_ops(path)
    assert ops["QuantizeLinear"] > 0
    assert ops["DequantizeLinear"] > 0
    assert not (tmp_path / "cpu.int8.onnx").exists()
    seven = got.extra[ORT_7BIT_VARIANT]  # the form for x86 without VNNI ships beside it
    assert seven.dtype == "int8-static"
    assert seven.files["model"].sha256 == sha256_file(tmp_path / "cpu.7bit.onnx")
    assert record["seven_bit"]["heldout_vs_fp32"]["top1_agreement"] >= 0.5
    x = PRE(onnx_static.heldout_images())
    with torch.inference_mode():
        ref = model(x)[0].softmax(-1)
    assert got.forward is not None
    int8 = got.forward(x.contiguous())[0].softmax(-1)
    assert float((ref - int8).abs().max()) <= served["heldout_vs_fp32"]["max_prob_diff"] + 1e-5


def test_candidate_keeps_the_fp32_graph_when_int8_misses(tmp_path):
    model = TinyConvNet().eval()
    fp32 = _fp32_candidate(model, tmp_path)
    before = sha256_file(tmp_path / "cpu.onnx")
    progress: list[str] = []
    got, record = onnx_static.image_candidate(_spec(max_prob_diff=-1.0), model, PRE, fp32, tmp_path, 1, progress.append)
    assert got is fp32  # the fp32 candidate, untouched
    assert got.variant is not None
    assert got.variant.dtype == "float32"
    assert record["applied"] is False
    assert "misses" in record["reason"]
    assert "fp32 ONNX graph stays" in record["reason"]
    assert "heldout_vs_fp32" in record  # the figures that missed are kept
    assert sha256_file(tmp_path / "cpu.onnx") == before
    assert not (tmp_path / "cpu.int8.onnx").exists()
    assert not (tmp_path / "cpu.7bit.onnx").exists()
    assert any("refused" in line for line in progress)


class WiderConvNet(nn.Module):
    """Stem, depthwise, two pointwise convs and a dense head: the layer kinds of EfficientNet-Lite."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU6(),
            nn.Conv2d(16, 16, 3, padding=1, groups=16),
            nn.ReLU6(),
            nn.Conv2d(16, 32, 1),
            nn.ReLU6(),
            nn.Conv2d(32, 32, 1),
            nn.ReLU6(),
        )
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x).mean((2, 3))
        return self.head(features), features


def test_the_7bit_form_cannot_saturate_and_gives_the_costliest_convs_unsigned_weights(tmp_path):
    """Every signed int8 weight a u8 x s8 GEMM multiplies lies within +-64 (a pair of products with u8
    activations sums to at most 32640 < 32767); the costliest convs take uint8 weights (ONNX Runtime's
    u8 x u8 kernel widens: exact); depthwise weights stay 8-bit; the dense head stays fp32."""
    import onnx
    from onnx import numpy_helper

    model = WiderConvNet().eval()
    _fp32_candidate(model, tmp_path)
    pixels = PRE(onnx_static.calibration_images()).contiguous().numpy()
    reader = onnx_static.CalibrationReader("pixel_values", pixels)
    form = onnx_static.quantize(tmp_path / "cpu.onnx", tmp_path / "seven.onnx", reader, seven_bit=True)
    assert form["weight_bits"] == 7
    assert len(form["u8_weight_convs"]) == onnx_static.SEVEN_BIT_U8_CONVS == 2
    assert len(form["fp32_nodes"]) == 1  # the Gemm
    graph = onnx.load(str(tmp_path / "seven.onnx")).graph
    made_by = {out: n for n in graph.node for out in n.output}
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    kinds: dict[str, list[str]] = {"int7": [], "depthwise_int8": [], "uint8": [], "fp32": []}
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        source = made_by.get(node.input[1])
        if source is None or source.op_type != "DequantizeLinear":
            assert inits[node.input[1]].dtype == np.float32
            kinds["fp32"].append(node.op_type)
            continue
        weights = inits[source.input[0]]
        if weights.dtype == np.uint8:
            kinds["uint8"].append(node.name)
        elif any(a.name == "group" and a.i > 1 for a in node.attribute):
            assert np.abs(weights.astype(int)).max() > 64  # full 8-bit range
            kinds["depthwise_int8"].append(node.name)
        else:
            assert weights.dtype == np.int8
            assert np.abs(weights.astype(int)).max() <= 64
            kinds["int7"].append(node.name)
    assert sorted(kinds["uint8"]) == sorted(form["u8_weight_convs"])
    assert len(kinds["int7"]) == 1  # of the three GEMM convs, the one that costs least at 7 bits
    assert len(kinds["depthwise_int8"]) == 1
    assert kinds["fp32"] == ["Gemm"]
