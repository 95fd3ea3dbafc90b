"""ONNX Runtime's usage events stay off: an offline server must not look up or call Microsoft's event
collector (ONNX Runtime 1.32 does both, from a background thread, about 30 s after its first session,
unless ORT_DISABLE_TELEMETRY is set before it loads). The offline proofs (tests/test_bundle_arm64.py
under emulation lives long enough) see the connect attempts themselves; this pins the switch."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.serving import ROOT

CHILD = """
import os, pathlib, sys
from onnx import TensorProto, helper, save
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), sys.argv[1])
assert "onnxruntime" not in sys.modules
from edge_mm.runtime.onnx_session import OnnxSession
OnnxSession(pathlib.Path(sys.argv[1]), threads=1)
print(os.environ.get("ORT_DISABLE_TELEMETRY"))
"""


def test_the_first_session_turns_onnx_runtime_telemetry_off(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "identity.onnx")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "1"
