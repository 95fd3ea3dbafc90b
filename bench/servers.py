"""Start and stop the servers a benchmark compares, each as its own process on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (s), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


@contextmanager
def server(
    argv: list[str],
    port: int,
    env: dict[str, str] | None = None,
    ready_path: str = "/health/ready",
    timeout: float = 300,
    cwd: Path = ROOT,
):
    """Start ``argv`` in ``cwd``; yield (base URL, pid) once ``ready_path`` answers 200."""
    log = open(ROOT / "bench" / "results" / f"server-{port}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[:4]} exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(base + ready_path, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[:4]} not ready after {timeout} s")
            time.sleep(0.3)
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def edge_mm_argv(config: Path) -> list[str]:
    return [sys.executable, "-m", "edge_mm", "--config", str(config), "--log-level", "WARNING", "serve"]


def edge_mm_tree(rev: str) -> Path:
    """A folder holding the edge_mm package as of git revision ``rev`` (extracted once under
    build/work/bench-rev/), for measuring before and after a change in one run: run
    ``python -m edge_mm`` there (``-m`` puts the working directory first on sys.path)."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True, check=True)
    dest = ROOT / "build" / "work" / "bench-rev" / sha.stdout.strip()
    if not (dest / "edge_mm").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", rev, "edge_mm"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest
