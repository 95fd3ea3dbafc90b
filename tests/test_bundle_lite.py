"""The lite bundle (no torch, every model on ONNX Runtime), built once per session (tests/bundles.py):
layout, offline over loopback like the CPU bundle, and the same answers as the Python server.

Slow (.venv-lite if missing, the ONNX Runtime artifacts if missing, PyInstaller). The offline proof
needs root (unshare -n) and strace, as tests/test_bundle.py's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_mm.build.bundle_contents import BUILD_ONLY, INFO_NAME
from edge_mm.manifest import ORT_7BIT_VARIANT, ORT_FP32_VARIANT, ORT_VARIANT
from tests.bundle_probe import FACE_FLOWS, SAMPLES, is_loopback
from tests.bundles import LITE_SETTINGS, lite_bundle
from tests.serving import ROOT, processes_with, request, running_server

pytestmark = pytest.mark.slow

LITE_ROUTES = {  # every default route but video (no PyAV in lite)
    "embeddings",
    "zero-shot-classification",
    "image-classification",
    "image-embeddings",
    "face-detection",
    "zero-shot-image-classification",
    "voice-activity",
    "vision/face",
    "vision/scene",
    "object-detection",
    "vision/detection",
    "ocr",
    "vision/ocr",
    *(f"{prefix}/{op}" for prefix in FACE_FLOWS for op in ("register", "recognize", "list", "delete")),
}
INT8_ATOL = 2e-2  # `edge-mm check`'s CPU tolerance (runtime/self_check.py)


@pytest.fixture(scope="module")
def bundle() -> Path:
    return lite_bundle()


def _requirements(path: Path) -> set[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {line for line in lines if line and not line.startswith("-r")}


def test_lite_requirements_are_the_runtime_ones_without_torch_and_av():
    runtime = _requirements(ROOT / "requirements" / "runtime.txt")
    lite = _requirements(ROOT / "requirements" / "lite.txt")
    assert lite == {r for r in runtime if not r.startswith(("torch", "av"))}


def test_layout_and_flavour(bundle):
    info = json.loads((bundle / INFO_NAME).read_text())
    assert info["flavour"] == "lite"
    assert info["torch_version"] is None
    assert info["onnxruntime_version"]
    manifest = json.loads((bundle / "artifacts" / "manifest.json").read_text())
    assert manifest["flavour"] == "lite"
    # int8 graphs ship with their 7-bit form (x86 without VNNI) and the start-up gate's fp32-compute fallback
    int8 = {"minilm": {ORT_7BIT_VARIANT, ORT_FP32_VARIANT}, "efficientnet": {ORT_7BIT_VARIANT, ORT_FP32_VARIANT}}
    onnx = ("minilm", "efficientnet", "mtcnn", "silero-vad", "conse", "ppocr", "coco-ssd")
    assert {name: set(m["variants"]) for name, m in manifest["models"].items()} == {
        "faces": {"cpu"},  # dlib's own files, run by dlib (no torch)
        **{name: {ORT_VARIANT, *int8.get(name, ())} for name in onnx},
    }
    assert manifest["models"]["faces"]["variants"]["cpu"]["backend"] == "dlib"
    internal = bundle / "_internal"
    for name in (*BUILD_ONLY, "torch", "functorch", "av", "torchvision"):
        top = internal / name.replace(".", "/")
        assert not top.exists(), f"{name} is in the lite bundle"
    assert not list(internal.rglob("libtorch_cpu*"))
    assert (internal / "onnxruntime").is_dir()


def test_offline_every_route_over_loopback(bundle):
    """As tests/test_bundle.py's: a network namespace with loopback only, every served route, no outbound connect."""
    if shutil.which("strace") is None:
        pytest.fail("strace is missing: apt-get install strace (.ci/run installs it)")
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        pytest.fail("unshare --net is not permitted here (needs root)")
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "offline_check.sh"), str(bundle / "edge-mm"), sys.executable],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert processes_with(str((bundle / "edge-mm").resolve())) == [], "the served executable outlived the proof"
    assert out.returncode == 0, report["problems"] or out.stderr[-3000:]
    assert report["outbound"] == []
    assert all(is_loopback(p) for p in report["peers"])
    assert report["info"]["torch_version"] is None
    assert report["info"]["artifacts"]["flavour"] == "lite"
    assert set(report["served_routes"]) == LITE_ROUTES  # no /v1/video: the lite bundle has no PyAV
    assert all(report["routes"][f"/v1/{r}"] == 200 for r in LITE_ROUTES)


def test_answers_equal_the_python_servers(bundle):
    """Same artifacts, same ONNX Runtime: the frozen server answers as `edge-mm serve` from this checkout."""
    from edge_mm.config import load_settings
    from tests.conftest import test_client, warm_registry

    settings = load_settings(LITE_SETTINGS)
    here = test_client(settings, warm_registry(settings))
    with running_server(bundle / "settings.toml", cmd=[str(bundle / "edge-mm")], ready_timeout=120) as base:
        status, _, video = request(base + "/v1/video", {"video": ""})
        assert status == 404  # not a route of the lite bundle
        for route in sorted(LITE_ROUTES & set(SAMPLES)):  # the face store's routes: the offline proof's sequence
            body, _ = SAMPLES[route]
            body = body() if callable(body) else body
            status, _, got = request(f"{base}/v1/{route}", body)
            want = here.post(f"/v1/{route}", json=body)
            assert status == want.status_code == 200, (route, got)
            _assert_close(got, want.get_json(), route)


def _assert_close(got: object, want: object, where: str) -> None:
    """Equal structure and strings; numbers within the int8 tolerance."""
    if isinstance(want, dict):
        assert isinstance(got, dict)
        assert set(got) == set(want), where
        for k in want:
            if k not in ("inference_ms", "duration_ms", "timings", "inferenceMs", "processMs"):  # timings
                _assert_close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list) and want and all(isinstance(v, float) for v in want):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=INT8_ATOL, err_msg=where)
    elif isinstance(want, list):
        assert isinstance(got, list)
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_close(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=INT8_ATOL), where
    else:
        assert got == want, where
