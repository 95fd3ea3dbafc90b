"""The executable bundle (CPU flavour), built once per session (tests/bundles.py): offline, frozen sub-commands, layout.

Slow (a few minutes on 2 cores: .venv-cpu if missing, artifacts if missing, PyInstaller): CI runs
it once through `make test-slow`. The offline proof needs root (unshare -n) and strace.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_mm.build.bundle_contents import BUILD_ONLY, INFO_NAME
from edge_mm.manifest import ORT_7BIT_VARIANT, ORT_FP32_VARIANT, ORT_VARIANT
from tests.bundle_probe import is_loopback, peers
from tests.bundles import cpu_bundle
from tests.serving import ROOT, processes_with, request, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle() -> Path:
    return cpu_bundle()


def test_layout_and_flavour(bundle):
    info = json.loads((bundle / INFO_NAME).read_text())
    assert info["flavour"] == "cpu"
    assert info["torch_version"].startswith("2.13.0")
    assert (bundle / "edge-mm").is_file()
    assert (bundle / "artifacts" / "manifest.json").is_file()
    manifest = json.loads((bundle / "artifacts" / "manifest.json").read_text())
    assert manifest["flavour"] == "cpu"
    for name, m in manifest["models"].items():  # no CUDA variant; ONNX Runtime copies where the build made one
        assert m["variants"], name
        assert set(m["variants"]) <= {"cpu", ORT_VARIANT, ORT_7BIT_VARIANT, ORT_FP32_VARIANT}, name
    assert list(manifest["models"]["coco-ssd"]["variants"]) == [ORT_VARIANT]  # converted to ONNX only
    assert 'artifacts_dir = "artifacts"' in (bundle / "settings.toml").read_text()
    internal = bundle / "_internal"
    for name in BUILD_ONLY:
        top = internal / name.replace(".", "/")
        assert not top.exists(), f"build-only {name} is in the bundle"
    assert not (internal / "edge_mm" / "build").exists()


def test_offline_every_route_over_loopback(bundle):
    """Network namespace with loopback only; every route answers; strace sees no outbound connect."""
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
    assert "interfaces in the namespace: lo" in out.stderr
    assert report["outbound"] == []
    assert all(is_loopback(p) for p in report["peers"])
    assert report["info"]["device"] == "cpu"
    assert report["info"]["artifacts"]["flavour"] == "cpu"
    assert {"/health/ready", "/info", "/v1/models"} <= set(report["routes"])
    assert all(f"/v1/{r}" in report["routes"] for r in report["served_routes"])


def test_strace_records_connects(tmp_path):
    """The connect check is not vacuous: strace + peers() see a loopback connect, and flag any other address."""
    log = tmp_path / "trace"
    code = "import socket; s = socket.socket(); s.settimeout(1)\ntry: s.connect(('127.0.0.1', 9))\nexcept OSError: pass"
    subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(log), sys.executable, "-c", code], check=True
    )
    assert "127.0.0.1" in peers(log)
    log.write_text(
        '123 connect(5, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("192.0.2.7")}, 16) = -1\n'
    )
    assert [p for p in peers(log) if not is_loopback(p)] == ["192.0.2.7"]


def test_check_and_info_use_the_settings_next_to_the_executable(bundle, tmp_path):
    out = subprocess.run([str(bundle / "edge-mm"), "check"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "check passed" in out.stdout
    out = subprocess.run([str(bundle / "edge-mm"), "info"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout)["flavour"] == "cpu"
    out = subprocess.run([str(bundle / "edge-mm"), "build"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "source checkout" in out.stderr


def test_config_flag_overrides_the_bundled_settings(bundle, tmp_path):
    text = (bundle / "settings.toml").read_text()
    text = text.replace('artifacts_dir = "artifacts"', f'artifacts_dir = "{bundle / "artifacts"}"')
    config = tmp_path / "settings.toml"
    config.write_text("[server]\nmax_items = 3\n" + text)
    with running_server(config, cmd=[str(bundle / "edge-mm")]) as base:
        _, _, info = request(base + "/info")
        assert info["limits"]["server.max_items"] == 3
        assert info["device"] == "cpu"
        # torch is in the bundle (the TorchScript and CUDA paths), but every default model serves
        # ONNX Runtime here (the build's choice), so it is never loaded
        assert (bundle / "_internal" / "torch").is_dir()
        assert info["torch_version"] is None
        assert info["cuda_available"] is False
        # the bundle's own jemalloc (scripts/jemalloc.sh; runtime/malloc.py), preloaded by re-executing once
        assert info["allocator"] == "jemalloc"
        assert (bundle / "_internal" / "jemalloc" / "copyright").is_file()
        assert json.loads((bundle / "bundle_info.json").read_text())["allocator"] == "jemalloc"


def test_sigterm_drains_a_request_in_flight_and_exits_0(bundle):
    """The frozen executable handles SIGTERM like `python -m edge_mm serve`: answer, then exit 0."""
    from tests.test_server_process import partial_request, read_answer, server_process

    body = json.dumps({"inputs": ["a request in flight"]}).encode()
    head = b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    with server_process(bundle / "settings.toml", cmd=[str(bundle / "edge-mm")]) as (port, proc):
        upload = partial_request(port, head % len(body) + body[:5])
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        upload.sendall(body[5:])
        status_line, answer = read_answer(upload)
        upload.close()
        assert status_line.startswith("HTTP/1.1 200 ")
        assert len(answer["data"]) == 1
        assert proc.wait(timeout=60) == 0
        assert "SIGTERM: not accepting connections" in proc.stdout.read()
        proc.stdout.close()


def test_deepstack_python_against_the_bundle(bundle, tmp_path):
    """deepstack-python 0.9, the client NVRs and Home Assistant use, against the frozen executable and its
    default models: COCO detection, face register / list / recognize / delete, scene. The face store is a
    file of this test's own (EDGE_MM_RUNTIME_FACES_DB), so the bundle's folder stays as built."""
    from tests.conftest import need_import

    ds = need_import("deepstack.core", "deepstack-python is not installed (requirements/dev.txt)")
    media = ROOT / "edge_mm" / "build" / "data"
    astronaut, cat = (media / "sample_astronaut.jpg").read_bytes(), (media / "sample_cat.jpg").read_bytes()
    env = ("EDGE_MM_RUNTIME_FACES_DB", str(tmp_path / "faces.db"))
    with running_server(bundle / "settings.toml", env, cmd=[str(bundle / "edge-mm")], ready_timeout=180) as base:
        host, port = base.removeprefix("http://").split(":")
        objects = ds.DeepstackObject(ip=host, port=int(port), timeout=60)
        assert "cat" in {p["label"] for p in objects.detect(cat)}
        assert "person" in ds.get_objects(objects.detect(astronaut))
        face = ds.DeepstackFace(ip=host, port=int(port), timeout=60)
        assert face.register("Eileen Collins", astronaut) == "face added"
        assert face.get_registered_faces() == ["Eileen Collins"]
        (pred,) = face.recognize(astronaut)
        assert pred["userid"] == "Eileen Collins"
        # the client has no delete call: DeepStack's own form, as its documentation sends it
        import requests

        assert requests.post(f"{base}/v1/vision/face/delete", data={"userid": "Eileen Collins"}, timeout=60).ok
        assert face.get_registered_faces() == []
        assert ds.DeepstackScene(ip=host, port=int(port), timeout=60).recognize(cat)["label"]
