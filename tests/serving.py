"""Spawn `python -m edge_mm serve` on 127.0.0.1 with a free port, for process-level tests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

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
    """Yields the base URL once /health/ready answers 200; stops the server afterwards."""
    import os

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
    )
    try:
        base = None
        lines = []
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("server exited:\n" + "".join(lines))
            lines.append(line)
            if line.startswith("edge-mm listening on "):
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
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
