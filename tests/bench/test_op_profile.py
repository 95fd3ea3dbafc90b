"""bench.op_profile: per-operator shares from ONNX Runtime's profiler, and which MiniLM form it profiles."""

from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench import op_profile
from edge_mm.manifest import ORT_7BIT_VARIANT, ORT_VARIANT
from edge_mm.runtime import cpu_features


def _tiny_graph(path):
    """input_ids, attention_mask (int64, [batch, 32]) -> Cast, Mul, MatMul with a 32x16 weight, Relu."""
    weight = numpy_helper.from_array(np.ones((32, 16), np.float32), "w")
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["ids", "mask"], ["masked"]),
        helper.make_node("MatMul", ["masked", "w"], ["product"]),
        helper.make_node("Relu", ["product"], ["out"]),
    ]
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", 32]) for n in ("input_ids", "attention_mask")
    ]
    output = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 16])
    model = helper.make_model(helper.make_graph(nodes, "tiny", inputs, [output], [weight]))
    model.opset_import[0].version = 17
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_shares_cover_every_operator_run_and_sum_to_one(tmp_path):
    ms, shares = op_profile.op_shares(_tiny_graph(tmp_path / "tiny.onnx"), batch=4, runs=10)
    assert ms > 0
    assert "MatMul" in shares
    assert sum(shares.values()) == pytest.approx(1.0)
    assert list(shares.values()) == sorted(shares.values(), reverse=True)


def test_the_report_names_the_machine_and_each_graph():
    rows = [{"graph": "edge-mm g.onnx", "batch": 8, "ms": 12.5, "shares": {"MatMulIntegerToFloat": 0.7, "Gelu": 0.3}}]
    text = op_profile.report(rows, top=1)
    assert "Machine:" in text
    assert "int8 path" in text
    assert "**edge-mm g.onnx**, batch 8: 12.50 ms" in text
    assert "| MatMulIntegerToFloat | 70.0% |" in text
    assert "Gelu" not in text


@pytest.mark.parametrize(("path", "expected"), [("avx2", "cpu.7bit.onnx"), ("avx512-vnni", "cpu.onnx")])
def test_it_profiles_the_form_this_cpu_serves(tmp_path, monkeypatch, path, expected):
    def variant(file):
        return SimpleNamespace(files={"model": SimpleNamespace(path=f"minilm/{file}")})

    entry = SimpleNamespace(variants={ORT_VARIANT: variant("cpu.onnx"), ORT_7BIT_VARIANT: variant("cpu.7bit.onnx")})
    monkeypatch.setattr(op_profile, "read_manifest", lambda root: SimpleNamespace(models={"minilm": entry}))
    info = cpu_features.CpuInfo(machine="x86_64", model="test", path=path, flags=[], source="test")
    monkeypatch.setattr(cpu_features, "detect", lambda: info)
    assert op_profile.served_graph(tmp_path) == tmp_path / "minilm" / expected
