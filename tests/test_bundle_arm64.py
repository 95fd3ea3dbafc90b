"""The linux/arm64 lite bundle (`make bundle-arm64`, scripts/bundle_arm64.sh), proven under qemu-user:
built by PyInstaller in an emulated arm64 Debian root, run from an arm64 root filesystem with no
Python in a loopback-only network namespace, every route answered, and each answer equal to the
x86-64 lite bundle's on the same inputs within the fidelity gates.

Slow: the x86 lite bundle (tests/bundles.py), the arm64 build root (cached in ~/.cache/edge-mm,
keyed by its inputs), PyInstaller and the server under emulation. Needs root, debootstrap,
qemu-user-static and strace (scripts/system_deps.sh). The emulated proof runs in a worker thread
(background_proof; tests/bundles.py arm64_proof), beside the arm64 image's (tests/deploy/test_image_arm64.py)
when the session runs both: one bundle build, one x86 probe, two emulated servers at once. The figures (size,
start-up, RSS) land in build/work/arm64-proof.json; emulated timings say nothing about an Arm board, and no
test reads them.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_mm.build.bundle_contents import INFO_NAME
from tests.arm64_probe import assert_same_answers
from tests.bundles import arm64_bundle, arm64_proof, lite_bundle, lite_report
from tests.serving import ROOT

pytestmark = pytest.mark.slow

FIGURES = ROOT / "build" / "work" / "arm64-proof.json"


def background_proof() -> dict:
    """tests/arm64_probe.py's report on the arm64 bundle, run by scripts/arm64_check.sh (in a worker thread,
    beside the image's proof when the session runs tests/deploy/test_image_arm64.py too)."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "arm64_check.sh"), str(arm64_bundle()), sys.executable],
        capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    lines = out.stdout.strip().splitlines()
    assert lines, out.stderr[-4000:]
    report = json.loads(lines[-1])
    report["returncode"], report["stderr"] = out.returncode, out.stderr[-4000:]
    return report


@pytest.fixture(scope="module")
def emulated_report(request: pytest.FixtureRequest) -> dict:
    return arm64_proof(__name__, background_proof, (getattr(i, "module", None) for i in request.session.items))


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


def test_emulated_offline_from_a_root_without_python(emulated_report):
    report = emulated_report
    assert processes_rooted_in(report["chroot"]) == [], "the emulated server outlived the proof"
    assert report["returncode"] == 0, report["problems"] or report["stderr"]
    assert report["outbound"] == []
    assert report["served_routes"], report
    assert all(status == 200 for route, status in report["routes"].items() if "unserved" not in route), report["routes"]


def test_answers_equal_the_x86_bundles(emulated_report):
    """Same inputs to the x86-64 lite bundle (native) and the arm64 one (emulated): same labels,
    embeddings cosine >= 0.999, boxes within 1 px, other numbers within the int8 tolerance."""
    arm = emulated_report
    x86_bundle = lite_bundle()
    x86 = lite_report()
    assert x86["problems"] == []
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
    assert_same_answers(arm, x86)
