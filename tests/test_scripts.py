"""The proof scripts stop everything they start, also on failure and on SIGTERM (scripts/contain.sh).

The offline proof runs here with a stub probe (OFFLINE_CHECK_PROBE) that leaves servers behind
the ways a real one can: ignoring SIGTERM, in a session of its own, or under ``strace -f``, which
detaches on SIGTERM and leaves its tracee running. tests/test_bundle.py runs the real bundle.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.serving import processes_with

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, CONTAIN_GRACE_S="1")  # the stubs ignore SIGTERM: wait 1 s, not 5, before SIGKILL
SLEEPER = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"


def _can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("setsid") is None:
        return False
    cmd = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "true"]
    return subprocess.run(cmd, capture_output=True).returncode == 0


needs_namespaces = pytest.mark.skipif(not _can_unshare(), reason="unshare --net --pid needs root")


def _stub(marker: str, how: str, exit_code: int) -> str:
    server = f"{sys.executable} -c '{SLEEPER}' {marker}"
    start = {
        "ignores SIGTERM": f"{server} &",
        "own session": f"setsid {server} &",
        "under strace": f"strace -f -qq -o /dev/null {server} & sleep 1; kill -TERM $!",
    }[how]
    return f"{start} sleep 1; exit {exit_code}"


def _wait_until(predicate, seconds: float = 20) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@needs_namespaces
@pytest.mark.parametrize("exit_code", [0, 1])
@pytest.mark.parametrize("how", ["ignores SIGTERM", "own session", "under strace"])
def test_offline_check_leaves_no_process_behind(tmp_path, how, exit_code):
    if how == "under strace" and shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    marker = f"edge-mm-stub-{uuid.uuid4().hex}"
    env = dict(ENV, OFFLINE_CHECK_PROBE=_stub(marker, how, exit_code))
    (tmp_path / "edge-mm").touch()
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "offline_check.sh"), str(tmp_path / "edge-mm")],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == exit_code, out.stderr
    assert "interfaces in the namespace: lo" in out.stderr
    assert processes_with(marker) == []


@needs_namespaces
def test_offline_check_stopped_by_sigterm_leaves_no_process_behind(tmp_path):
    marker = f"edge-mm-stub-{uuid.uuid4().hex}"
    server = f"{sys.executable} -c '{SLEEPER}' {marker}"
    env = dict(ENV, OFFLINE_CHECK_PROBE=f"{server} & setsid {server} & wait")
    (tmp_path / "edge-mm").touch()
    script = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "offline_check.sh"), str(tmp_path / "edge-mm")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        started = _wait_until(lambda: len(processes_with(marker, prefix=sys.executable)) == 2)
        assert started, "the stub servers never started"
        script.send_signal(signal.SIGTERM)
        assert script.wait(timeout=30) == 143
        assert processes_with(marker) == []
    finally:
        script.kill()
        for pid in processes_with(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("pid_namespace", [False, True])
def test_contain_stops_the_group_on_failure(pid_namespace):
    """scripts/contain.sh on its own: the mode gpu_check.sh uses (no root) and the namespace mode."""
    if pid_namespace and not _can_unshare():
        pytest.skip("unshare --pid needs root")
    marker = f"edge-mm-stub-{uuid.uuid4().hex}"
    flags = "--mount-proc" if pid_namespace else ""
    script = f"""
        set -euo pipefail
        . scripts/contain.sh
        trap 'rc=$?; trap - EXIT; contain_stop; exit $rc' EXIT
        contain {flags} -- sh -c "{sys.executable} -c '{SLEEPER}' {marker} & sleep 1; exit 7"
    """
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert out.returncode == 7, out.stderr
    assert processes_with(marker) == []
