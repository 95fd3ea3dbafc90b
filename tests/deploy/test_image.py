"""The container image (scripts/image.sh, deploy/image/): the CPU bundle on a local debootstrap
minbase, run with podman read-only as a non-root user behind a port published on 127.0.0.1.

Slow: the session's CPU bundle (tests/bundles.py, shared with tests/test_bundle.py), debootstrap
once (build/work/minbase), then the image. Needs root, podman, runc and debootstrap
(scripts/system_deps.sh). Every podman call uses deploy/image/containers.conf; the containers and
images made here have unique names and are removed at the end."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bundle_probe import probe_routes
from tests.bundles import cpu_bundle
from tests.conftest import missing, need
from tests.serving import ROOT, request
from tests.test_server_process import partial_request, read_answer

pytestmark = pytest.mark.slow

CONF = ROOT / "deploy" / "image" / "containers.conf"
IMAGE_SH = ROOT / "scripts" / "image.sh"
UID = 10001  # deploy/kubernetes/deployment.yaml runAsUser
RUN_ID = uuid.uuid4().hex[:8]


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CONTAINERS_CONF=str(CONF))
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


def image_sh(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(IMAGE_SH), *args], capture_output=True, text=True, timeout=timeout, check=False)


def runtime_problem(root: Path) -> str | None:
    """Why podman cannot start a container here (None when it can): /usr/bin/true and its libraries
    as a root filesystem, no image needed."""
    for f in [
        "/usr/bin/true",
        *subprocess.run(["ldd", "/usr/bin/true"], capture_output=True, text=True).stdout.split(),
    ]:
        if f.startswith("/"):
            (root / f[1:]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, root / f[1:])
    out = podman("run", "--rm", "--rootfs", str(root), "/usr/bin/true")
    return None if out.returncode == 0 else f"podman cannot start a container here: {out.stderr.strip()[-600:]}"


@pytest.fixture(scope="module")
def podman_ready(tmp_path_factory: pytest.TempPathFactory) -> None:
    """podman, runc and debootstrap are there and podman can start a container (else skip; CI: fail)."""
    need(os.geteuid() == 0, "the image build needs root (rootful podman, debootstrap)")
    for tool in ("podman", "runc", "debootstrap"):
        need(shutil.which(tool), f"{tool} is missing: scripts/system_deps.sh installs it (apt-get, as root)")
    info = podman("info")
    need(info.returncode == 0, f"podman does not start here: {info.stderr.strip()[-600:]}")
    problem = runtime_problem(tmp_path_factory.mktemp("true-root"))
    if problem:
        missing(problem)


def remove_image(tag: str) -> None:
    podman("rmi", "--force", tag)


@pytest.fixture(scope="module")
def image(podman_ready: None) -> Iterator[str]:
    """The image of the session's CPU bundle, with a tag of its own (removed afterwards)."""
    tag = f"localhost/edge-mm-test:{RUN_ID}"
    out = image_sh(str(cpu_bundle()), "--tag", tag)
    try:
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.strip() == tag
        yield tag
    finally:
        remove_image(tag)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(image: str, name: str, *options: str, args: tuple[str, ...] = ()) -> str:
    """`podman run -d --read-only` with a free loopback port published on the container's 8080;
    waits until /health/ready answers 200 and returns the base URL."""
    port = free_port()
    out = podman("run", "-d", "--name", name, "--read-only", "-p", f"127.0.0.1:{port}:8080", *options, image, *args)
    assert out.returncode == 0, out.stderr
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        assert state == "running", f"container {state}:\n{podman('logs', name).stderr[-3000:]}"
        try:
            if request(base + "/health/ready", timeout=5)[0] == 200:
                return base
        except (OSError, ValueError):  # not listening yet, or the forwarder's reset before it is
            pass
        time.sleep(0.5)
    raise AssertionError(f"not ready in 300 s:\n{podman('logs', name).stderr[-3000:]}")


@pytest.fixture(scope="module")
def served(image: str) -> Iterator[tuple[str, str]]:
    """(container name, base URL): the image as built, nothing mounted, default settings."""
    name = f"edge-mm-test-{RUN_ID}"
    try:
        yield name, start(image, name)
    finally:
        podman("rm", "--force", "--time", "0", name)


def test_every_default_route_answers_over_the_published_port(served):
    report: dict = {"routes": {}, "problems": []}
    probe_routes(served[1], report)
    assert report["problems"] == []
    assert report["info"]["device"] == "cpu"
    assert report["info"]["artifacts"]["flavour"] == "cpu"
    assert {"/health/live", "/health/ready", "/info", "/v1/models"} <= set(report["routes"])
    assert report["served_routes"]
    assert all(f"/v1/{r}" in report["routes"] for r in report["served_routes"])


def test_the_server_is_pid_1_and_not_root(served):
    name = served[0]
    status = podman("exec", name, "cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    gids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Gid:"))
    assert uids == [str(UID)] * 4  # real, effective, saved, filesystem
    assert gids == [str(UID)] * 4
    cmdline = podman("exec", name, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert cmdline[:2] == ["/opt/edge-mm/edge-mm", "serve"]
    assert podman("exec", name, "id", "-un").stdout.strip() == "edge-mm"


def test_writes_outside_the_tmpfs_fail(served):
    name = served[0]
    for path in ("/opt/edge-mm/x", "/opt/x", "/x", "/etc/x"):
        out = podman("exec", name, "touch", path)
        assert out.returncode != 0, path
        assert "Read-only file system" in out.stderr, (path, out.stderr)
    # read-only for root too: the file system, not only the permissions
    out = podman("exec", "--user", "0", name, "touch", "/opt/edge-mm/x")
    assert out.returncode != 0
    assert "Read-only file system" in out.stderr
    assert podman("exec", name, "touch", "/tmp/x").returncode == 0


def test_health_check_passes_and_can_fail(image, served):
    check = json.loads(podman("image", "inspect", image).stdout)[0]["Healthcheck"]  # docker format only
    assert check["Test"] == ["CMD", "/usr/local/bin/edge-mm-health"]
    out = podman("healthcheck", "run", served[0])
    assert out.returncode == 0, out.stdout + out.stderr
    # the same check against a port where nothing listens reports the failure
    assert podman("exec", "-e", "EDGE_MM_SERVER_PORT=9", served[0], "/usr/local/bin/edge-mm-health").returncode == 1


def test_mounted_settings_artifacts_and_environment(image, tmp_path):
    """settings.toml and artifacts mounted read-only (as deploy/kubernetes does), a limit from EDGE_MM_*."""
    bundle = cpu_bundle()
    text = (bundle / "settings.toml").read_text()
    assert 'artifacts_dir = "artifacts"' in text
    text = text.replace('artifacts_dir = "artifacts"', 'artifacts_dir = "/srv/artifacts"')
    (tmp_path / "settings.toml").write_text("[server]\nmax_text_chars = 1234\n" + text)
    (tmp_path / "settings.toml").chmod(0o644)  # readable by the container's user, as a ConfigMap's files are
    tmp_path.chmod(0o755)
    name = f"edge-mm-test-{RUN_ID}-mounted"
    try:
        base = start(
            image, name,
            "-v", f"{tmp_path}:/etc/edge-mm:ro", "-v", f"{bundle / 'artifacts'}:/srv/artifacts:ro",
            "-e", "EDGE_MM_SERVER_MAX_ITEMS=3",
            args=("--config", "/etc/edge-mm/settings.toml", "serve"),
        )  # fmt: skip
        _, _, info = request(base + "/info")
        assert info["limits"]["server.max_text_chars"] == 1234
        assert info["limits"]["server.max_items"] == 3
        status, _, answer = request(base + "/v1/embeddings", {"inputs": ["one", "two", "three", "four"]})
        assert status == 413, answer  # over max_items: refused before any work
        status, _, answer = request(base + "/v1/embeddings", {"inputs": ["mounted artifacts"]})
        assert status == 200, answer
        assert len(answer["data"]) == 1
    finally:
        podman("rm", "--force", "--time", "0", name)


def test_registered_faces_outlive_the_container_on_its_volume(image):
    """The face store is on the image's VOLUME (/var/lib/edge-mm, writable under --read-only): a face
    registered in one container is recognized by the next one given the same named volume."""
    import base64

    photo = base64.b64encode((ROOT / "edge_mm" / "build" / "data" / "sample_astronaut.jpg").read_bytes()).decode()
    volume, names = f"edge-mm-test-{RUN_ID}-faces", [f"edge-mm-test-{RUN_ID}-faces-{i}" for i in (1, 2)]
    try:
        base = start(image, names[0], "-v", f"{volume}:/var/lib/edge-mm")
        status, _, answer = request(base + "/v1/faces/register", {"userid": "eileen", "image": photo})
        assert (status, answer.get("registered")) == (200, 1), answer
        podman("rm", "--force", "--time", "0", names[0])
        base = start(image, names[1], "-v", f"{volume}:/var/lib/edge-mm")
        status, _, answer = request(base + "/v1/faces/list", {})
        assert answer["users"] == [{"userid": "eileen", "descriptors": 1}], answer
        status, _, answer = request(base + "/v1/faces/recognize", {"image": photo})
        assert [f["userid"] for f in answer["results"][0]["faces"]] == ["eileen"], answer
    finally:
        for name in names:
            podman("rm", "--force", "--time", "0", name)
        podman("volume", "rm", "--force", volume)


def test_sigterm_drains_a_request_in_flight_and_exits_0(served):
    """Last in this module: it stops the shared container. `podman stop` sends SIGTERM to PID 1."""
    name, base = served
    port = int(base.rsplit(":", 1)[1])
    body = json.dumps({"inputs": ["a request in flight"]}).encode()
    head = b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    upload = partial_request(port, head % len(body) + body[:5])
    time.sleep(0.5)  # the forwarded connection is accepted by the server before the signal
    stopped: list[subprocess.CompletedProcess[str]] = []
    stopper = threading.Thread(target=lambda: stopped.append(podman("stop", "--time", "60", name)))
    stopper.start()
    deadline = time.monotonic() + 30
    while "SIGTERM" not in podman("logs", name).stderr and time.monotonic() < deadline:
        time.sleep(0.2)
    upload.sendall(body[5:])
    status_line, answer = read_answer(upload)
    upload.close()
    stopper.join(timeout=90)
    assert status_line.startswith("HTTP/1.1 200 ")
    assert len(answer["data"]) == 1
    assert stopped, "podman stop did not return"
    assert stopped[0].returncode == 0, stopped[0].stderr
    assert podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
    logs = podman("logs", name).stderr
    assert "SIGTERM: not accepting connections" in logs


def test_save_names_the_archive_as_kubernetes_looks_it_up(podman_ready, tmp_path):
    """--save: a docker-archive tagged docker.io/library/edge-mm:<flavour> (`image: edge-mm:cpu`
    in deployment.yaml), from a stand-in bundle (a shell script), so it needs no real bundle."""
    fake = tmp_path / "bundle"
    fake.mkdir()
    (fake / "edge-mm").write_text('#!/bin/sh\necho "args $*"\nid -u\n')
    (fake / "edge-mm").chmod(0o755)
    flavour = f"test{RUN_ID}"
    (fake / "bundle_info.json").write_text(json.dumps({"flavour": flavour, "edge_mm_version": "0.0"}))
    archive = tmp_path / "image.tar"
    tag = f"edge-mm:{flavour}"
    try:
        out = image_sh(str(fake), "--save", str(archive))
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.strip() == tag  # the tag follows the bundle's flavour
        listing = subprocess.run(["tar", "-xOf", str(archive), "manifest.json"], capture_output=True, text=True)
        assert json.loads(listing.stdout)[0]["RepoTags"] == [f"docker.io/library/{tag}"]
        assert podman("image", "exists", f"docker.io/library/{tag}").returncode != 0  # only in the archive
        run = podman("run", "--rm", "--read-only", tag)
        assert run.stdout.split() == ["args", "serve", str(UID)]
    finally:
        remove_image(tag)


def test_the_lite_bundle_makes_an_image_too(podman_ready):
    """The lite bundle (no torch) in its own image: its routes answer, not as root, flavour lite."""
    from tests.bundles import lite_bundle

    tag, name = f"localhost/edge-mm-test-lite:{RUN_ID}", f"edge-mm-test-lite-{RUN_ID}"
    out = image_sh(str(lite_bundle()), "--tag", tag)
    try:
        assert out.returncode == 0, out.stderr[-3000:]
        base = start(tag, name)
        report: dict = {"routes": {}, "problems": []}
        probe_routes(base, report)
        assert report["problems"] == []
        assert report["info"]["artifacts"]["flavour"] == "lite"
        assert report["info"]["torch_version"] is None
        assert set(report["served_routes"]) >= {"embeddings", "image-classification"}
        uid_line = next(
            x for x in podman("exec", name, "cat", "/proc/1/status").stdout.splitlines() if x.startswith("Uid:")
        )
        assert uid_line.split()[1:] == [str(UID)] * 4
    finally:
        podman("rm", "--force", "--time", "0", name)
        remove_image(tag)
