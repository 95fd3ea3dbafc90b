"""Figures for the lite bundle (no torch) against the CPU bundle, in one run: disk, exec -> ready, RSS.

    python -m bench.lite_figures [--runs 3]

Reads the bundles `make bundle-lite` / `make bundle-cpu` (or the slow tests, tests/bundles.py) wrote:

    dist/lite/edge-mm/ or build/work/test-bundle-lite/edge-mm/   lite flavour (settings.lite.toml)
    dist/edge-mm/ or build/work/test-bundle/edge-mm/             CPU flavour (settings.toml)

Rows: the lite bundle with its models (every default model but video, all on ONNX Runtime); the
CPU bundle with every default model (its build chose each backend: where every one is ONNX Runtime,
the CPU bundle does not load torch either, and only the disk differs). Disk: ``du -sm`` of the bundle folder. Time to ready: from exec until GET
/health/ready answers 200 (models loaded, hashes checked, warmed), median of ``--runs`` cold starts.
RSS: VmRSS after warm-up and two requests per served text/image route (the largest of the runs).
Aims (issue 11): lite at most 250 MB on disk, 300 MB RSS, ready in 1.5 s; the CPU bundle at most
400 MB RSS with every default model.
Writes bench/results/lite_figures.md and .json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

from bench.bundle_figures import _tree_rss, size_mb
from bench.servers import free_port
from tests.serving import request

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
LITE = (ROOT / "dist" / "lite" / "edge-mm", ROOT / "build" / "work" / "test-bundle-lite" / "edge-mm")
CPU = (ROOT / "dist" / "edge-mm", ROOT / "build" / "work" / "test-bundle" / "edge-mm")
AIMS = {"size_mb": 250.0, "rss_mb": 300.0, "ready_s": 1.5}
CPU_RSS_AIM = 400.0
SPEECH = ROOT / "tests" / "media" / "speech.wav"
IMAGE = ROOT / "edge_mm" / "build" / "data" / "sample_coffee.jpg"


def first_built(candidates: tuple[Path, ...]) -> Path | None:
    return next((b for b in candidates if (b / "bundle_info.json").is_file()), None)


def du_mb(path: Path) -> float:
    """``du -sm``: MiB of disk blocks, as a user sees it."""
    return float(subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far: start-up work a busy machine cannot inflate (unlike wall time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _warm_requests(base: str) -> None:
    image = base64.b64encode(IMAGE.read_bytes()).decode()
    _, _, listed = request(base + "/v1/models")
    routes = {r for m in listed["models"] for r in m["routes"]}
    bodies = {
        "embeddings": {"inputs": ["a short sentence", "another one, a little longer than the first"]},
        "zero-shot-classification": {"inputs": ["I love my dog"], "labels": ["animals", "finance"]},
        "image-classification": {"image": image},
        "image-embeddings": {"images": [image]},
        "face-detection": {"image": image},
        "zero-shot-image-classification": {"image": image, "labels": ["a cup", "a cat"]},
        "voice-activity": {"audio": base64.b64encode(SPEECH.read_bytes()).decode()},
    }
    for _ in range(2):
        for route, body in bodies.items():
            if route in routes:
                status, _, answer = request(f"{base}/v1/{route}", body)
                if status != 200:
                    raise RuntimeError(f"/v1/{route} -> {status} {answer}")


def start_once(bundle: Path, config: Path) -> dict:
    port = free_port()
    env = dict(os.environ, EDGE_MM_SERVER_PORT=str(port), EDGE_MM_SERVER_HOST="127.0.0.1")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(bundle / "edge-mm"), "--config", str(config), "serve"],
        cwd="/",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{bundle} exited: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
            try:
                status, _, _ = request(base + "/health/ready", timeout=2)
            except OSError:
                status = 0
            if status == 200:
                break
            if time.perf_counter() - t0 > 300:
                raise RuntimeError("not ready after 300 s")
            time.sleep(0.01)
        ready = time.perf_counter() - t0
        cpu = cpu_seconds(proc.pid)
        _warm_requests(base)
        time.sleep(0.5)
        _, _, info = request(base + "/info")
        backends = sorted({m["backend"] for m in info["models"].values()})
        return {
            "ready_s": ready,
            "cpu_s": cpu,
            "rss_mb": _tree_rss(proc.pid),
            "torch": info.get("torch_version"),
            "backends": backends,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if proc.stderr:
            proc.stderr.close()


def measure(name: str, bundle: Path, config: Path, runs: int) -> dict:
    info = json.loads((bundle / "bundle_info.json").read_text())
    starts = [start_once(bundle, config) for _ in range(runs)]
    return {
        "row": name,
        "bundle": str(bundle.relative_to(ROOT)),
        "flavour": info["flavour"],
        "built_at": info["built_at"],
        "du_mb": du_mb(bundle),
        "size_mb": round(size_mb(bundle), 1),
        "internal_mb": du_mb(bundle / "_internal"),
        "artifacts_mb": du_mb(bundle / "artifacts"),
        "models": sorted(info["models"]),
        "ready_s": round(statistics.median(s["ready_s"] for s in starts), 2),
        "ready_s_all": [round(s["ready_s"], 2) for s in starts],
        "cpu_s": round(statistics.median(s["cpu_s"] for s in starts), 2),
        "rss_mb": round(max(s["rss_mb"] for s in starts)),
        "torch_loaded": starts[0]["torch"],
        "backends": starts[0]["backends"],
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| row | models | disk MB (du -sm; _internal / artifacts) | exec -> ready s (median; all) "
        "| CPU s to ready (median) | RSS after warm-up MB | torch loaded | backends |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['row']} | {', '.join(r['models'])} | {r['du_mb']:.0f} ({r['internal_mb']:.0f} / {r['artifacts_mb']:.0f}) "
            f"| {r['ready_s']} ({', '.join(map(str, r['ready_s_all']))}) | {r['cpu_s']} | {r['rss_mb']} "
            f"| {r['torch_loaded'] or 'no'} | {', '.join(r['backends'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    lite, cpu = first_built(LITE), first_built(CPU)
    if lite is None:
        raise SystemExit("no lite bundle: make bundle-lite (or pytest -m slow tests/test_bundle_lite.py)")
    rows = []
    runs = [("lite onedir", lite, lite / "settings.toml")]
    if cpu is not None:
        runs.append(("cpu onedir, every default model", cpu, cpu / "settings.toml"))
    for name, bundle, config in runs:
        print(f"{name}: measuring ...", flush=True)
        rows.append(measure(name, bundle, config, args.runs))
    load = os.getloadavg()
    r = rows[0]
    verdict = {
        "size_mb": r["du_mb"] <= AIMS["size_mb"],
        "rss_mb": r["rss_mb"] <= AIMS["rss_mb"],
        "ready_s": r["ready_s"] <= AIMS["ready_s"],
    }
    notes = [
        f"Machine: {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        "(1 / 5 / 15 min) when the run ended; the machine is shared, so wall times are upper bounds. "
        "CPU s to ready: user + system time of the server process until /health/ready, what start-up costs "
        "a quiet machine (less file reads; ONNX Runtime and numpy may run part of it on a second thread).",
        "Aims for the lite bundle (issue 11): "
        + "; ".join(
            f"{k} <= {AIMS[k]:g}: {'met' if ok else 'missed'} ({r['du_mb' if k == 'size_mb' else k]})"
            for k, ok in verdict.items()
        )
        + ".",
    ]
    if cpu is not None:
        rss = rows[1]["rss_mb"]
        notes.append(
            f"Aim for the CPU bundle (issue 11): rss_mb <= {CPU_RSS_AIM:g}: {'met' if rss <= CPU_RSS_AIM else 'missed'} ({rss})."
        )
    notes += [f"{r['row']}: {r['bundle']}, built {r['built_at']}." for r in rows]
    notes.append(
        "A bundle built before the torch-free runtime (commit e7dedf2) loads torch at start-up even where every "
        "model it serves runs on ONNX Runtime; one built after it loads torch only for TorchScript models."
    )
    if cpu is None:
        notes.append("No CPU bundle was built, so there is no CPU row (make bundle-cpu).")
    text = (
        "# Lite bundle figures\n\nWritten by `python -m bench.lite_figures`.\n\n"
        + table(rows)
        + "\n\n"
        + "\n".join(f"- {n}" for n in notes)
        + "\n"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lite_figures.md").write_text(text)
    (RESULTS / "lite_figures.json").write_text(json.dumps(rows, indent=2))
    print(text)


if __name__ == "__main__":
    main()
