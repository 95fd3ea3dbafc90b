"""The linux/arm64 image (`make image-arm64`, scripts/image.sh --arch arm64), proven under qemu-user:
the session's arm64 test bundle (tests/bundles.py, shared with tests/test_bundle_arm64.py) on the
arm64 minbase, an image for linux/arm64 with no Python in it, listed beside the x86-64 lite image in
a manifest list; run with podman under emulation in a network namespace with loopback only
(`--network none`), every route called from the host inside that namespace (nsenter, tests/arm64_probe.py
--url), and each answer equal to the x86-64 lite bundle's on the same inputs within the fidelity gates.

Slow: the bundles, two image builds and the emulated server (about two minutes to ready, four for
the routes, OCR most of it). The work runs in a worker thread (background_proof), started by this module
or by tests/test_bundle_arm64.py, whichever runs first, so that the image's server and the chroot's run
side by side. Needs root, podman, runc, debootstrap, qemu-user-static and nsenter. Its images,
container and manifest list have unique names and are removed by the proof itself. The figures
(image size, start-up, RSS) land in build/work/arm64-image-proof.json; no test reads them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.arm64_probe import assert_same_answers
from tests.bundles import arm64_bundle, arm64_proof, lite_bundle, lite_report
from tests.deploy.test_image import image_sh, podman, podman_ready, remove_image  # noqa: F401 (a fixture)
from tests.serving import ROOT

pytestmark = pytest.mark.slow

RUN_ID = uuid.uuid4().hex[:8]
TAG = f"localhost/edge-mm-test-arm64:{RUN_ID}"
X86_TAG = f"localhost/edge-mm-test-lite:{RUN_ID}"
MANIFEST = f"localhost/edge-mm-test-multiarch:{RUN_ID}"
NAME = f"edge-mm-test-arm64-{RUN_ID}"
FIGURES = ROOT / "build" / "work" / "arm64-image-proof.json"
# What arm64_check.sh runs in its root: any Python answers one of these (the bundle's own libpython does not);
# uname -m first, so that a shell which did not run at all cannot pass for an image without Python.
NO_PYTHON = (
    "uname -m; command -v python3 || command -v python || ls /usr/bin/python* /usr/local/bin/python* /usr/lib/python3*"
)


def _emulation(folder: Path) -> tuple[Path, str]:
    """An Arm /proc/cpuinfo for the container (ONNX Runtime's cpuinfo crashes on the host's x86 one under
    qemu-user) and the emulated CPU, both as scripts/arm64_lib.sh gives them to its chroots."""
    cpuinfo = folder / "cpuinfo"
    out = subprocess.run(
        ["bash", "-c", '. scripts/arm64_lib.sh && arm64_cpuinfo "$1" && echo "$QEMU_CPU"', "bash", str(cpuinfo)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    cpuinfo.chmod(0o644)
    return cpuinfo, out.stdout.strip()


def _image_checks(report: dict) -> None:
    """Architecture, no Python, and the manifest list with the x86 lite image (built meanwhile)."""
    inspected = json.loads(podman("image", "inspect", TAG).stdout)[0]
    report["os"], report["architecture"], report["image_bytes"] = (
        inspected["Os"], inspected["Architecture"], inspected["Size"],
    )  # fmt: skip
    found = podman("run", "--rm", "--network", "none", "--entrypoint", "sh", TAG, "-c", NO_PYTHON)
    machine, _, rest = found.stdout.strip().partition("\n")
    report["python"] = {"returncode": found.returncode, "machine": machine, "found": rest.strip()}
    built = image_sh(str(lite_bundle()), "--tag", X86_TAG)
    report["x86_build"] = {"returncode": built.returncode, "stderr": built.stderr[-2000:]}
    try:
        podman("manifest", "create", MANIFEST, f"containers-storage:{X86_TAG}", f"containers-storage:{TAG}")
        listed = podman("manifest", "inspect", MANIFEST)
        manifests = json.loads(listed.stdout).get("manifests", []) if listed.returncode == 0 else []
        report["platforms"] = sorted(f"{m['platform']['os']}/{m['platform']['architecture']}" for m in manifests)
    finally:
        podman("manifest", "rm", MANIFEST)
        remove_image(X86_TAG)


def _serve_and_probe(report: dict, folder: Path) -> None:
    """The image under emulation in a namespace with only loopback, probed from the host inside it."""
    cpuinfo, qemu_cpu = _emulation(folder)
    started = time.time()
    run = podman(
        "run", "-d", "--name", NAME, "--read-only", "--network", "none",
        "-v", f"{cpuinfo}:/proc/cpuinfo:ro", "-e", f"QEMU_CPU={qemu_cpu}",
        # emulation is 10 to 50 times slower than a board: the per-request deadline as arm64_check.sh raises it
        "-e", "EDGE_MM_RUNTIME_REQUEST_TIMEOUT_S=600",
        TAG,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    pid = podman("inspect", "--format", "{{.State.Pid}}", NAME).stdout.strip()
    netns = f"--net=/proc/{pid}/ns/net"
    links = subprocess.run(["nsenter", netns, "ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    report["interfaces"] = [line.split(":")[1].strip() for line in links.splitlines()]
    _image_checks(report)  # native work, while the emulated server starts
    probe = subprocess.run(
        ["nsenter", netns, sys.executable, "-m", "tests.arm64_probe", "--url", "http://127.0.0.1:8080",
         "--pid", pid, "--started", str(started)],
        cwd=ROOT, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    lines = probe.stdout.strip().splitlines()
    report.update(json.loads(lines[-1]) if lines else {"problems": [f"probe: {probe.stderr[-3000:]}"]})
    report["state"] = podman("inspect", "--format", "{{.State.Status}}", NAME).stdout.strip()
    if report["problems"]:
        report["logs"] = podman("logs", NAME).stderr[-3000:]


def background_proof() -> dict:
    """Build the arm64 image of the session's arm64 bundle, check it, run it and call every route; removes
    what it made (container, images, manifest list). A worker thread runs it (tests/bundles.py arm64_proof)."""
    report: dict = {"tag": TAG, "problems": []}
    t0 = time.monotonic()
    built = image_sh(str(arm64_bundle()), "--arch", "arm64", "--tag", TAG)
    report["build"] = {
        "returncode": built.returncode,
        "stderr": built.stderr[-3000:],
        "s": round(time.monotonic() - t0),
    }
    if built.returncode != 0:
        return report
    folder = Path(tempfile.mkdtemp(prefix="edge-mm-arm64-image-"))
    try:
        _serve_and_probe(report, folder)
    finally:
        podman("rm", "--force", "--time", "0", NAME)
        report["left_running"] = podman("container", "exists", NAME).returncode == 0
        remove_image(TAG)
        shutil.rmtree(folder, ignore_errors=True)
    report["proof_s"] = round(time.monotonic() - t0)
    return report


@pytest.fixture(scope="module")
def proof(podman_ready: None, request: pytest.FixtureRequest) -> dict:  # noqa: F811 (the imported fixture)
    assert shutil.which("nsenter"), "nsenter is missing (util-linux)"
    report = arm64_proof(__name__, background_proof, (getattr(i, "module", None) for i in request.session.items))
    assert report["build"]["returncode"] == 0, report["build"]["stderr"]
    return report


def test_the_image_is_linux_arm64_without_python(proof):
    assert (proof["os"], proof["architecture"]) == ("linux", "arm64")
    assert proof["python"]["machine"] == "aarch64", proof["python"]
    assert proof["python"]["found"] == "", proof["python"]
    assert proof["python"]["returncode"] != 0, proof["python"]


def test_the_manifest_list_names_both_platforms(proof):
    assert proof["x86_build"]["returncode"] == 0, proof["x86_build"]["stderr"]
    assert proof["platforms"] == ["linux/amd64", "linux/arm64"]


def test_emulated_offline_every_route_answers(proof):
    assert proof["interfaces"] == ["lo"], "the container's network namespace has more than loopback"
    assert proof["problems"] == [], proof.get("logs")
    assert proof["state"] == "running", "the server stopped before the probe ended"
    assert proof["served_routes"], proof
    assert all(status == 200 for route, status in proof["routes"].items() if "unserved" not in route), proof["routes"]
    assert not proof["left_running"]


def test_answers_equal_the_x86_bundles(proof):
    x86 = lite_report()
    assert x86["problems"] == []
    FIGURES.write_text(
        json.dumps(
            {
                "note": "podman under qemu-user on x86-64: start-up and memory are the emulator's, not an Arm board's",
                "image_bytes": proof["image_bytes"],
                "image_build_s": proof["build"]["s"],
                **{k: proof.get(k) for k in ("ready_s", "routes_s", "rss_kb", "hwm_kb", "proof_s")},
                "route_s": {route: a["s"] for route, a in proof["answers"].items()},
            },
            indent=2,
        )
        + "\n"
    )
    assert_same_answers(proof, x86)
