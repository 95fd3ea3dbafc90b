"""Row-wise int8 (build/onnx_rowwise.py): a row's answer does not depend on its batch-mates, weights fit
every CPU's int8 kernel, and the weight-only fallback stays next to fp32."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from edge_mm.build import onnx_backend, onnx_rowwise


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(32, 64), nn.Linear(64, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    path = tmp_path_factory.mktemp("rowwise") / "fp32.onnx"
    x = torch.randn(2, 5, 32)
    return onnx_backend.export(Mlp().eval(), (x,), path, ["x"], ["y"], {"x": {0: "batch", 1: "seq"}})


def _batch_with_loud_mate() -> tuple[np.ndarray, np.ndarray]:
    """A quiet row, and the same row batched next to one 50x louder (a long, loud sentence's tokens)."""
    rng = np.random.default_rng(0)
    quiet = rng.standard_normal((1, 6, 32)).astype(np.float32)
    loud = 50 * rng.standard_normal((1, 6, 32)).astype(np.float32)
    return quiet, np.concatenate([quiet, loud])


def test_a_rows_answer_does_not_depend_on_its_batch_mates(fp32, tmp_path):
    done = onnx_rowwise.rowwise_int8(fp32, tmp_path / "rowwise.onnx")
    assert (done.matmuls, done.row_quantizers, done.weight_bits) == (2, 2, 7)
    forward = onnx_backend.OrtForward(tmp_path / "rowwise.onnx")
    quiet, batch = _batch_with_loud_mate()
    alone = forward(torch.from_numpy(quiet)).numpy()
    batched = forward(torch.from_numpy(batch)).numpy()[:1]
    assert float(np.abs(alone - batched).max()) <= 1e-6 * float(np.abs(alone).max())


def test_per_tensor_dynamic_int8_does_depend_on_them(fp32, tmp_path):
    """What the rewrite replaces: ``quantize_dynamic``'s one scale per tensor moves the quiet row's answer."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(fp32, tmp_path / "tensor.onnx", op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    forward = onnx_backend.OrtForward(tmp_path / "tensor.onnx")
    quiet, batch = _batch_with_loud_mate()
    alone = forward(torch.from_numpy(quiet)).numpy()
    batched = forward(torch.from_numpy(batch)).numpy()[:1]
    assert float(np.abs(alone - batched).max()) > 1e-2 * float(np.abs(alone).max())


def test_weights_fit_a_16_bit_pair_sum_and_answers_stay_close_to_fp32(fp32, tmp_path):
    onnx_rowwise.rowwise_int8(fp32, tmp_path / "rowwise.onnx")
    graph = onnx.load(str(tmp_path / "rowwise.onnx")).graph
    weights = [numpy_helper.to_array(i) for i in graph.initializer if i.name.endswith("_wq")]
    assert len(weights) == 2
    for w in weights:
        assert w.dtype == np.int8
        assert int(np.abs(w.astype(np.int32)).max()) == 63  # 255 x 63 x 2 = 32130 < 32767: no vpmaddubsw saturation
    assert {n.op_type for n in graph.node} >= {"MatMulIntegerToFloat", "QuantizeLinear", "ReduceMax"}
    assert "MatMul" not in {n.op_type for n in graph.node}
    x = torch.randn(3, 7, 32)
    with torch.inference_mode():
        ref = Mlp().eval()(x).numpy()
    got = onnx_backend.OrtForward(tmp_path / "rowwise.onnx")(x).numpy()
    assert float(np.abs(got - ref).max()) < 0.05 * float(np.abs(ref).max())


def test_excluded_matmuls_stay_fp32(fp32, tmp_path):
    name = next(n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "MatMul")
    done = onnx_rowwise.rowwise_int8(fp32, tmp_path / "rowwise.onnx", exclude=[name])
    assert done.matmuls == 1
    nodes = onnx.load(str(tmp_path / "rowwise.onnx")).graph.node
    assert next(n for n in nodes if n.name == name).op_type == "MatMul"


def test_weight_only_fallback_has_no_int8_kernel_and_matches_fp32(fp32, tmp_path):
    onnx_rowwise.weight_only(fp32, tmp_path / "w8.onnx")
    ops = {n.op_type for n in onnx.load(str(tmp_path / "w8.onnx")).graph.node}
    assert "DequantizeLinear" in ops
    assert not ops & {"MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeLinear", "QuantizeLinear"}
    x = torch.randn(4, 3, 32)
    with torch.inference_mode():
        ref = Mlp().eval()(x).numpy()
    got = onnx_backend.OrtForward(tmp_path / "w8.onnx")(x).numpy()
    assert float(np.abs(got - ref).max()) < 0.02 * float(np.abs(ref).max())


def test_weight_bits_out_of_range_are_refused(fp32, tmp_path):
    with pytest.raises(ValueError, match="weight_bits"):
        onnx_rowwise.rowwise_int8(fp32, tmp_path / "x.onnx", weight_bits=9)


class Embed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table, self.head = nn.Embedding(50, 16), nn.Linear(16, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.table(ids))


def _tables_are_int8(path) -> bool:
    return any(i.name.endswith("_quantized") for i in onnx.load(str(path)).graph.initializer)


@pytest.mark.parametrize("tables_cost_the_gates", [False, True])
def test_int8_embedding_tables_stay_unless_they_cost_the_gates(tmp_path, tables_cost_the_gates):
    ids = torch.randint(0, 50, (2, 5))
    fp32 = onnx_backend.export(
        Embed().eval(), (ids,), tmp_path / "fp32.onnx", ["ids"], ["y"], {"ids": {0: "b", 1: "s"}}
    )
    seen: list[bool] = []

    def fidelity(forward):  # a gate the int8 tables miss, when asked to
        int8_tables = _tables_are_int8(forward.session.path)
        seen.append(int8_tables)
        return {}, ["tables moved the answers"] if int8_tables and tables_cost_the_gates else []

    forms, checked, tables = onnx_backend._int8_forms(fp32, tmp_path / "cpu.onnx", [], fidelity, threads=1)
    assert set(forms) == set(onnx_backend.INT8_FORMS)
    assert tables is not tables_cost_the_gates
    assert _tables_are_int8(tmp_path / "cpu.onnx") is tables
    assert all(m == [] for _, m in checked.values())
    assert seen == ([True, True, False, False] if tables_cost_the_gates else [True, True])


class NormedMlp(nn.Module):
    """Layer norm, then a widening Linear (a constant scale suits its input) and a narrowing one (it does not)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.norm, self.up, self.down = nn.LayerNorm(32), nn.Linear(32, 64), nn.Linear(64, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(self.norm(x))))


@pytest.fixture(scope="module")
def normed(tmp_path_factory):
    path = tmp_path_factory.mktemp("static") / "fp32.onnx"
    x = torch.randn(2, 5, 32)
    return onnx_backend.export(NormedMlp().eval(), (x,), path, ["x"], ["y"], {"x": {0: "batch", 1: "seq"}})


def _calibration() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [{"x": rng.standard_normal((4, 6, 32)).astype(np.float32)} for _ in range(3)]


def test_constant_scales_go_to_widening_matmuls_inputs_and_are_measured(normed):
    names = onnx_rowwise.static_candidates(normed)
    assert len(names) == 1  # the layer norm's output; the narrowing layer's input (after relu) stays row-wise
    ranges = onnx_rowwise.activation_ranges(normed, names, _calibration())
    model = NormedMlp().eval()
    with torch.inference_mode():
        want = max(float(model.norm(torch.from_numpy(f["x"])).abs().max()) for f in _calibration())
    assert ranges[names[0]] == pytest.approx(want, rel=1e-5)


def test_padding_positions_are_left_out_of_the_ranges(normed, tmp_path):
    """An activation of shape (batch, seq, ...) is measured over the positions the mask keeps."""
    names = onnx_rowwise.static_candidates(normed)
    feed = _calibration()[0]
    loud = feed["x"].copy()
    loud[:, -1] = 0
    loud[:, -1, 0] = 100  # the last position of every row (padding here): one spike, sqrt(31) after the norm
    mask = np.ones(loud.shape[:2], np.int64)
    mask[:, -1] = 0
    # the graph takes no mask input; activation_ranges reads it from the feed all the same (a text model's feed has one)
    import onnx as onnx_lib

    model = onnx_lib.load(str(normed))
    model.graph.input.append(onnx_lib.helper.make_tensor_value_info("attention_mask", onnx_lib.TensorProto.INT64, None))
    model.graph.output.append(
        onnx_lib.helper.make_tensor_value_info("attention_mask", onnx_lib.TensorProto.INT64, None)
    )
    with_mask = tmp_path / "with_mask.onnx"
    onnx_lib.save(model, str(with_mask))
    masked = onnx_rowwise.activation_ranges(with_mask, names, [{"x": loud, "attention_mask": mask}])
    whole = onnx_rowwise.activation_ranges(normed, names, [{"x": loud}])
    unpadded = onnx_rowwise.activation_ranges(normed, names, [{"x": np.ascontiguousarray(loud[:, :-1])}])
    assert masked[names[0]] == pytest.approx(unpadded[names[0]], rel=1e-5)
    assert whole[names[0]] == pytest.approx(31**0.5, rel=1e-3)
    assert masked[names[0]] < 4


def test_constant_scales_fold_the_bias_and_stay_batch_invariant_and_close(normed, tmp_path):
    names = onnx_rowwise.static_candidates(normed)
    ranges = onnx_rowwise.activation_ranges(normed, names, _calibration())
    done = onnx_rowwise.rowwise_int8(normed, tmp_path / "static.onnx", static=ranges)
    plain = onnx_rowwise.rowwise_int8(normed, tmp_path / "rowwise.onnx")
    assert (done.matmuls, done.row_quantizers, done.static_quantizers) == (2, 1, 1)
    assert (plain.row_quantizers, plain.static_quantizers) == (2, 0)
    graph = onnx.load(str(tmp_path / "static.onnx")).graph
    fused = next(n for n in graph.node if n.op_type == "MatMulIntegerToFloat" and len(n.input) == 7)
    assert fused.input[6] in {i.name for i in graph.initializer}  # the up layer's bias, folded in
    readers = [n for n in graph.node if fused.output[0] in n.input]
    assert [n.op_type for n in readers] == ["Relu"]  # no rescale, no bias add after it
    assert len(graph.node) < len(onnx.load(str(tmp_path / "rowwise.onnx")).graph.node) - 6
    forward = onnx_backend.OrtForward(tmp_path / "static.onnx")
    rng = np.random.default_rng(2)
    quiet = rng.standard_normal((1, 6, 32)).astype(np.float32)
    loud = 50 * rng.standard_normal((1, 6, 32)).astype(np.float32)
    alone = forward(torch.from_numpy(quiet)).numpy()
    batched = forward(torch.from_numpy(np.concatenate([quiet, loud]))).numpy()[:1]
    assert float(np.abs(alone - batched).max()) <= 1e-6 * float(np.abs(alone).max())
    x = torch.randn(3, 7, 32)
    with torch.inference_mode():
        ref = NormedMlp().eval()(x).numpy()
    got = forward(x).numpy()
    assert float(np.abs(got - ref).max()) < 0.05 * float(np.abs(ref).max())


@pytest.mark.parametrize("refuse_static", [False, True])
def test_constant_scales_serve_only_when_every_form_meets_the_gates(normed, tmp_path, refuse_static):
    names = onnx_rowwise.static_candidates(normed)
    ranges = onnx_rowwise.activation_ranges(normed, names, _calibration())

    def fidelity(forward):
        graph = onnx.load(str(forward.session.path)).graph
        static = any(n.op_type == "QuantizeLinear" and n.input[1].endswith("_s") for n in graph.node)
        return {}, ["constant scales moved the answers"] if static and refuse_static else []

    figures: dict = {}
    forms, checked, _ = onnx_backend._int8_forms(
        normed, tmp_path / "cpu.onnx", [], fidelity, threads=1, static=ranges, figures=figures
    )
    assert all(m == [] for _, m in checked.values())
    assert {f.static_quantizers for f in forms.values()} == ({0} if refuse_static else {1})
    assert ("constant_scales_refused" in figures) is refuse_static
