"""The linux/arm64 lite bundle (`make bundle-arm64`, scripts/bundle_arm64.sh), proven under qemu-user:
built by PyInstaller in an emulated arm64 Debian root, run from an arm64 root filesystem with no
Python in a loopback-only network namespace, every route answered, and each answer equal to the
x86-64 lite bundle's on the same inputs within the fidelity gates.

Slow: the x86 lite bundle (tests/bundles.py), the arm64 build root (cached in ~/.cache/edge-mm,
keyed by its inputs), PyInstaller and the server under emulation. Needs root, debootstrap,
qemu-user-static and strace (scripts/system_deps.sh). The figures (size, start-up, RSS) land in
build/work/arm64-proof.json; emulated timings say nothing about an Arm board, and no test reads them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_mm.build.bundle_contents import INFO_NAME
from tests.arm64_probe import probe
from tests.bundles import lite_bundle
from tests.serving import ROOT

pytestmark = pytest.mark.slow

TEST_ARM64_DIST = ROOT / "build" / "work" / "test-bundle-arm64"
FIGURES = ROOT / "build" / "work" / "arm64-proof.json"
MIN_COSINE = 0.999  # embeddings (text and image)
BOX_PX = 1.0  # boxes, landmarks, polygons and DeepStack coordinates
# Other numbers (scores, similarities, distances). The int8 graphs run other kernels on Arm (dot product)
# than on x86 (VNNI); EfficientNet-Lite0's own build gate allows 0.2 of probability against fp32.
SCORE_ATOL = 0.05
TIE_BELOW = 0.05  # ranked labels scoring under this may trade places with near-ties (within SCORE_ATOL)
IGNORED = {"inference_ms", "duration_ms", "timings", "inferenceMs", "processMs"}
PIXELS = {"box", "landmarks", "x_min", "y_min", "x_max", "y_max"}


@functools.cache
def arm64_bundle() -> Path:
    """build/work/test-bundle-arm64/edge-mm, from the same lite artifacts as the x86 lite bundle."""
    lite_bundle()  # builds the lite artifacts where missing, with the default environment
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "bundle_arm64.sh"), str(TEST_ARM64_DIST)],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    return Path(out.stdout.strip().splitlines()[-1])


@functools.cache
def emulated_report() -> dict:
    """tests/arm64_probe.py's report on the arm64 bundle, run by scripts/arm64_check.sh."""
    bundle = arm64_bundle()
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "arm64_check.sh"), str(bundle), sys.executable],
        capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    lines = out.stdout.strip().splitlines()
    assert lines, out.stderr[-4000:]
    report = json.loads(lines[-1])
    report["returncode"], report["stderr"] = out.returncode, out.stderr[-4000:]
    return report


def processes_rooted_in(root: str) -> list[int]:
    """Live processes whose root directory (chroot) is ``root``."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and os.readlink(entry / "root") == root:
                found.append(int(entry.name))
    return found


def test_the_executable_and_its_libraries_are_aarch64():
    bundle = arm64_bundle()
    for path in (bundle / "edge-mm", *sorted((bundle / "_internal").glob("libpython3*.so*"))[:1]):
        described = subprocess.run(["file", "-L", str(path)], capture_output=True, text=True, check=True).stdout
        assert "ARM aarch64" in described, described
    ort = list((bundle / "_internal" / "onnxruntime" / "capi").glob("onnxruntime_pybind11_state*.so"))
    assert ort, "no onnxruntime extension module in the bundle"
    assert "aarch64" in ort[0].name


def test_same_models_and_flavour_as_the_x86_lite_bundle():
    arm = json.loads((arm64_bundle() / INFO_NAME).read_text())
    x86 = json.loads((lite_bundle() / INFO_NAME).read_text())
    assert arm["flavour"] == x86["flavour"] == "lite"
    assert arm["torch_version"] is None
    assert arm["models"] == x86["models"]
    assert arm["onnxruntime_version"] == x86["onnxruntime_version"]


def test_emulated_offline_from_a_root_without_python():
    report = emulated_report()
    assert processes_rooted_in(report["chroot"]) == [], "the emulated server outlived the proof"
    assert report["returncode"] == 0, report["problems"] or report["stderr"]
    assert report["outbound"] == []
    assert report["served_routes"], report
    assert all(status == 200 for route, status in report["routes"].items() if "unserved" not in route), report["routes"]


def test_answers_equal_the_x86_bundles():
    """Same inputs to the x86-64 lite bundle (native) and the arm64 one (emulated): same labels,
    embeddings cosine >= 0.999, boxes within 1 px, other numbers within the int8 tolerance."""
    arm = emulated_report()
    x86_bundle = lite_bundle()
    x86 = probe(x86_bundle / "edge-mm", None, None)
    assert x86["problems"] == []
    assert arm["served_routes"] == x86["served_routes"]
    size = json.loads((arm64_bundle() / INFO_NAME).read_text())["size_bytes"]
    FIGURES.write_text(
        json.dumps(
            {
                "note": "qemu-user on x86-64: start-up and memory are the emulator's, not an Arm board's",
                "arm64": {"size_bytes": size, **{k: arm.get(k) for k in ("ready_s", "routes_s", "rss_kb", "hwm_kb")}},
                "arm64_route_s": {route: a["s"] for route, a in arm["answers"].items()},
                "x86_64": {
                    "size_bytes": json.loads((x86_bundle / INFO_NAME).read_text())["size_bytes"],
                    **{k: x86.get(k) for k in ("ready_s", "routes_s", "rss_kb", "hwm_kb")},
                },
            },
            indent=2,
        )
        + "\n"
    )
    assert set(arm["answers"]) == set(x86["answers"])
    for route, want in x86["answers"].items():
        got = arm["answers"][route]
        assert got["status"] == want["status"], (route, got)
        assert_equivalent(got["answer"], want["answer"], route)


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def _near_tie(got: object, want: object) -> bool:
    """Two ranked labels at the same rank, both scoring under TIE_BELOW: their order is int8 rounding."""
    scores = [x.get("score") if isinstance(x, dict) and "label" in x else None for x in (got, want)]
    return all(isinstance(v, float) and v < TIE_BELOW for v in scores)


def assert_equivalent(got: object, want: object, where: str, pixels: bool = False) -> None:
    """Equal structure and strings; embeddings by cosine, pixel positions (anything under a PIXELS key) within
    BOX_PX, other numbers within SCORE_ATOL."""
    key = where.rsplit(".", 1)[-1].split("[")[0]
    pixels = pixels or key in PIXELS
    if isinstance(want, dict):
        assert isinstance(got, dict), where
        assert set(got) == set(want), where
        for k in sorted(set(want) - IGNORED):
            assert_equivalent(got[k], want[k], f"{where}.{k}", pixels)
    elif key == "embedding":
        assert isinstance(got, list), where
        assert _cosine(got, want) >= MIN_COSINE, f"{where}: cosine {_cosine(got, want):.5f}"
    elif isinstance(want, list):
        assert isinstance(got, list), where
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            if _near_tie(g, w):
                assert g["score"] == pytest.approx(w["score"], abs=SCORE_ATOL), f"{where}[{i}]"
                continue
            assert_equivalent(g, w, f"{where}[{i}]", pixels)
    elif isinstance(want, int | float) and not isinstance(want, bool):
        assert got == pytest.approx(want, abs=BOX_PX if pixels else SCORE_ATOL), where
    else:
        assert got == want, where
