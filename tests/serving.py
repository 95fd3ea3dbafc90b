"""Spawn `python -m edge_mm serve` on 127.0.0.1 with a free port, for process-level tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from edge_mm.serving.listening import PREFIX as LISTENING

ROOT = Path(__file__).resolve().parents[1]


def request(url: str, body: object | None = None, headers: dict[str, str] | None = None, timeout: float = 60):
    """(status, headers, parsed JSON body)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


@contextmanager
def running_server(config: Path, *extra_env: tuple[str, str], ready_timeout: float = 180, cmd: list[str] | None = None):
    """Yields the base URL once /health/ready answers 200; stops the server afterwards.

    The server runs in its own process group, and stopping signals the whole group: a wrapper such
    as ``strace -f`` detaches on SIGTERM and would otherwise leave the server running.
    """
    env = dict(os.environ, EDGE_MM_SERVER_HOST="127.0.0.1", EDGE_MM_SERVER_PORT="0", PYTHONUNBUFFERED="1")
    env.update(dict(extra_env))
    argv = cmd or [sys.executable, "-m", "edge_mm"]
    proc = subprocess.Popen(
        [*argv, "--config", str(config), "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    drainer = None
    try:
        base = None
        lines = []
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("server exited:\n" + "".join(lines))
            lines.append(line)
            if line.startswith(LISTENING):
                base = line.split()[-1].strip()
                break
        assert base, "no listening line:\n" + "".join(lines)
        while time.monotonic() < deadline:
            try:
                status, _, _ = request(base + "/health/ready", timeout=5)
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("server never became ready")
        # keep reading its log: a full pipe would block every server thread that logs
        drainer = threading.Thread(target=_discard, args=(proc.stdout,), daemon=True)
        drainer.start()
        yield base
    finally:
        _stop_group(proc, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        _stop_group(proc, signal.SIGKILL)  # whatever ignored SIGTERM or outlived the wrapper
        proc.wait()
        if drainer is not None:
            drainer.join(timeout=10)
        if proc.stdout is not None and (drainer is None or not drainer.is_alive()):
            proc.stdout.close()


def _discard(stream: Any) -> None:
    with suppress(ValueError, OSError):
        for _ in stream:
            pass


def _stop_group(proc: subprocess.Popen, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def processes_with(marker: str, prefix: str = "") -> list[int]:
    """Live processes whose command line (starting with ``prefix``) or executable mentions ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            exe = os.readlink(entry / "exe") if marker.startswith("/") else ""
        except OSError:
            continue
        if (marker in cmdline and cmdline.startswith(prefix)) or exe == marker:
            found.append(int(entry.name))
    return found
