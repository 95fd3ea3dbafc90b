"""Smaller x86 CPUs at native speed (scripts/cpumask.sh): cpuid trapped and answered without AVX-512,
VNNI or AMX, so edge-mm's detection and ONNX Runtime's int8 kernels take that CPU's path.

What the mask must do to be worth trusting: hide the features from every reader (edge-mm's cpuid,
a new thread's), and change what ONNX Runtime computes exactly as an AVX2 machine's kernels would
(16-bit pair sums that saturate). Then the server's start-up gate on an AVX2 machine is tested in
seconds, not in the minutes qemu takes (tests/runtime/test_emulated_cpus.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_mm.manifest import ORT_7BIT_VARIANT
from edge_mm.runtime import cpu_features
from tests.conftest import can_trap_cpuid

ROOT = Path(__file__).resolve().parents[2]
CPUMASK = ROOT / "scripts" / "cpumask.sh"


pytestmark = pytest.mark.skipif(not can_trap_cpuid(), reason="needs an x86-64 CPU and kernel that trap cpuid")


def masked(mask: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != cpu_features.ENV_OVERRIDE}
    return subprocess.run(
        ["bash", str(CPUMASK), mask, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


DETECT = """
import json, threading
from edge_mm.runtime import cpu_features
seen = {}
t = threading.Thread(target=lambda: seen.update(thread=cpu_features._x86().path))
t.start(); t.join()
print(json.dumps({**cpu_features.detect().describe(), **seen}))
"""


@pytest.mark.parametrize(
    ("mask", "path", "hidden"),
    [
        ("avx2", "avx2", {"avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8"}),
        ("avx512", "avx512", {"avx512_vnni", "avx_vnni", "amx_tile", "amx_int8"}),
        ("sse4", "sse4", {"avx", "avx2", "avx512f", "avx512_vnni", "amx_int8"}),
    ],
)
def test_the_mask_hides_features_from_every_thread(mask, path, hidden):
    native = cpu_features.detect()
    proc = masked(mask, sys.executable, "-c", DETECT)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    if mask == "avx512" and "avx512bw" not in native.flags:
        pytest.skip("this CPU has no AVX-512 to keep")
    assert got["path"] == got["thread"] == path
    assert not hidden & set(got["flags"])
    assert set(got["flags"]) <= set(native.flags)
    assert got["model"] == native.model  # the brand string is the real one


SATURATE = """
import numpy as np, onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
k = 64
weights = numpy_helper.from_array(np.full((k, 16), 127, np.int8), "B")
graph = helper.make_graph(
    [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "g",
    [helper.make_tensor_value_info("A", TensorProto.UINT8, [None, k])],
    [helper.make_tensor_value_info("Y", TensorProto.INT32, [None, 16])], [weights])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
print(int(session.run(None, {"A": np.full((4, k), 255, np.uint8)})[0][0, 0]))
"""
EXACT = 64 * 255 * 127  # u8 255 x s8 127, 64 times: what 32-bit accumulation gives
SATURATED = 32 * 32767  # 32 pairs, each pair sum clamped to int16 by vpmaddubsw


@pytest.mark.parametrize(("mask", "expected"), [("avx2", SATURATED), ("avx512", SATURATED), ("sse4", EXACT)])
def test_onnxruntime_kernels_take_the_masked_cpus_path(mask, expected):
    """The AVX2 and AVX-512BW u8 x s8 kernels saturate pair sums (why the 7-bit forms exist); SSE4.1's
    widens to 16 bits first and does not; VNNI and AMX accumulate in 32 bits."""
    if mask == "avx512" and "avx512bw" not in cpu_features.detect().flags:
        pytest.skip("this CPU has no AVX-512 to keep")
    proc = masked(mask, sys.executable, "-c", SATURATE)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == expected
    assert cpu_features.CpuInfo("x86_64", "", mask).saturating is (expected == SATURATED)
    native = subprocess.run([sys.executable, "-c", SATURATE], capture_output=True, text=True, check=True)
    assert int(native.stdout) == (SATURATED if cpu_features.detect().saturating else EXACT)


def test_a_python_faulthandler_still_reports_real_crashes():
    """The mask keeps its SIGSEGV handler in front and passes every other fault on."""
    crash = "import ctypes, faulthandler; faulthandler.enable(); ctypes.string_at(0)"
    proc = masked("avx2", sys.executable, "-c", crash)
    assert proc.returncode == -11
    assert "Fatal Python error: Segmentation fault" in proc.stderr


def test_an_avx2_machine_serves_the_7bit_form_and_it_meets_the_gates(minilm_config, tmp_path):
    """`edge-mm check` (the start-up gate) on an AVX2 CPU at native speed: the 7-bit form is picked for
    it and meets the gates; the qemu twin (test_emulated_cpus.py) shows the same under emulation."""
    from tests.conftest import only_models

    config = tmp_path / "settings.toml"
    config.write_text(only_models(minilm_config.read_text(), {"minilm"}))
    proc = masked("avx2", sys.executable, "-m", "edge_mm", "--config", str(config), "check")
    out = proc.stdout
    assert proc.returncode == 0, (out, proc.stderr[-3000:])
    assert "int8 path avx2" in out
    rows = [line for line in out.splitlines() if line.startswith("minilm ")]
    assert len(rows) == 1, out
    assert ORT_7BIT_VARIANT in rows[0]
    assert rows[0].endswith("serves")
