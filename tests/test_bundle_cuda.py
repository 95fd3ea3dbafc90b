"""The CUDA bundle (make bundle-cuda: the default .venv's torch CUDA build plus onnxruntime-gpu from
requirements/cuda-ort.txt), built once per session (tests/bundles.py): it carries ONNX Runtime's CUDA
execution provider, and on a machine without a GPU it serves every model on CPU saying why, passes
`edge-mm check`, and refuses `device = cuda` with a reason. The GPU side is scripts/gpu_check.sh.

Slow (PyInstaller: about 2 minutes and 5 GB on 2 cores).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from edge_mm.build.bundle_contents import INFO_NAME
from tests.bundles import cuda_bundle
from tests.serving import ROOT, request, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle() -> Path:
    return cuda_bundle()


def _pinned_ort_gpu() -> str:
    (line,) = [x for x in (ROOT / "requirements" / "cuda-ort.txt").read_text().splitlines() if x.startswith("onnx")]
    return line.split("==")[1]


def test_it_carries_torch_cuda_and_onnxruntimes_cuda_provider(bundle):
    info = json.loads((bundle / INFO_NAME).read_text())
    assert info["flavour"] == "cuda"
    assert info["cuda_version"]
    assert "+cpu" not in info["torch_version"]
    assert info["onnxruntime_version"] == _pinned_ort_gpu()
    assert "CUDAExecutionProvider" in info["onnxruntime_providers"]
    assert "CPUExecutionProvider" in info["onnxruntime_providers"]
    assert list((bundle / "_internal" / "onnxruntime" / "capi").glob("libonnxruntime_providers_cuda.so"))


def test_check_passes_on_a_machine_without_a_gpu(bundle):
    out = subprocess.run(
        [str(bundle / "edge-mm"), "--config", str(bundle / "settings.toml"), "check"],
        cwd=bundle,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "check passed" in out.stdout


def test_without_a_gpu_every_model_serves_on_cpu_with_the_reason(bundle):
    with running_server(bundle / "settings.toml", cmd=[str(bundle / "edge-mm")]) as base:
        _, _, info = request(base + "/info")
        assert (info["device"], info["cuda_available"]) == ("cpu", False)
        for name, model in info["models"].items():
            assert model["device"] == "cpu", (name, model)
            assert "no CUDA device" in model["reason"], (name, model["reason"])
            if "provider" in model:  # ONNX Runtime sessions: the CPU provider of onnxruntime-gpu
                assert model["provider"] == "CPUExecutionProvider", (name, model)
        status, headers, body = request(base + "/v1/embeddings", {"input": ["a bundle built for CUDA, on a CPU"]})
        assert status == 200, body
        assert headers["X-Edge-Device"] == "cpu"
        assert len(body["data"][0]["embedding"]) == 384


def test_device_cuda_without_a_gpu_refuses_to_start_saying_why(bundle):
    env = {"EDGE_MM_RUNTIME_DEVICE": "cuda", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [str(bundle / "edge-mm"), "--config", str(bundle / "settings.toml"), "serve", "--port", "0"],
        cwd=bundle,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0
    assert "torch sees no CUDA device" in out.stdout + out.stderr
