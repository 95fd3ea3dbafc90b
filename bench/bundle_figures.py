"""Figures for the executable bundles: size, time from exec to ready, resident memory after warm-up.

    python -m bench.bundle_figures [--runs 3]

Reads the bundles `edge-mm package` wrote (build them first; see the Makefile's bundle targets):

    dist/edge-mm/              CPU flavour, onedir (the product for CPU boxes)
    dist/edge-mm-onefile/      CPU flavour, onefile (optional: start-up cost of unpacking)
    dist/no-excludes/edge-mm/  CPU flavour built with --no-excludes (optional: size before excluding)
    dist/cuda/edge-mm/         CUDA flavour, onedir (optional; served on CPU here when no GPU)

Time to ready: from exec until GET /health/ready answers 200 (models loaded, hashes checked,
warmed), median of ``--runs`` cold starts with prebuilt artifacts. RSS: VmRSS of the process (for
onefile: of the child that runs Python) after warm-up and one request per text/image route.
Writes bench/results/bundle_figures.md and .json.
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

from bench.machine import machine_line
from bench.servers import free_port, rss_mb
from tests.serving import request

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BUNDLES = {
    "cpu onedir": ROOT / "dist" / "edge-mm",
    "cpu onefile": ROOT / "dist" / "edge-mm-onefile",
    "cpu onedir, no excludes": ROOT / "dist" / "no-excludes" / "edge-mm",
    "cuda onedir": ROOT / "dist" / "cuda" / "edge-mm",
}
AIMS = {"ready_s": 3.0, "rss_mb": 1500.0, "size_mb": 1000.0}


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def _tree_rss(pid: int) -> float:
    """The largest VmRSS among ``pid`` and its children (onefile: the bootloader's child runs Python)."""
    best = rss_mb(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        best = max(best, _tree_rss(int(child)))
    return best


def _warm_requests(base: str) -> None:
    """One request per served text/image route, so RSS includes what serving touches."""
    media = ROOT / "edge_mm" / "build" / "data" / "sample_coffee.jpg"
    image = base64.b64encode(media.read_bytes()).decode() if media.is_file() else None
    _, _, listed = request(base + "/v1/models")
    routes = {r for m in listed["models"] for r in m["routes"]}
    bodies = {
        "embeddings": {"inputs": ["a short sentence", "another one, a little longer than the first"]},
        "zero-shot-classification": {"inputs": ["I love my dog"], "labels": ["animals", "finance"]},
        "image-classification": {"image": image},
        "face-detection": {"image": image},
        "zero-shot-image-classification": {"image": image, "labels": ["a cup", "a cat"]},
    }
    for route, body in bodies.items():
        if route in routes and (image is not None or "image" not in body):
            request(f"{base}/v1/{route}", body)


def start_once(bundle: Path) -> dict[str, float]:
    exe = bundle / "edge-mm"
    port = free_port()
    env = dict(os.environ, EDGE_MM_SERVER_PORT=str(port), EDGE_MM_SERVER_HOST="127.0.0.1")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(exe), "serve"], cwd="/", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{exe} exited: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
            try:
                status, _, _ = request(base + "/health/ready", timeout=2)
            except OSError:
                status = 0
            if status == 200:
                break
            if time.perf_counter() - t0 > 300:
                raise RuntimeError("not ready after 300 s")
            time.sleep(0.05)
        ready = time.perf_counter() - t0
        _warm_requests(base)
        time.sleep(0.5)
        _, _, info = request(base + "/info")
        return {"ready_s": ready, "rss_mb": _tree_rss(proc.pid), "device": info["device"]}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if proc.stderr:
            proc.stderr.close()


def measure(name: str, bundle: Path, runs: int) -> dict:
    info = json.loads((bundle / "bundle_info.json").read_text())
    row = {
        "bundle": name,
        "path": str(bundle.relative_to(ROOT)),
        "flavour": info["flavour"],
        "torch": info["torch_version"],
        "size_mb": round(size_mb(bundle), 1),
        "artifacts_mb": round(size_mb(bundle / "artifacts"), 1),
    }
    if "no excludes" in name:
        return row  # size only: it is the "before" of the exclusion figures
    starts = [start_once(bundle) for _ in range(runs)]
    row["ready_s"] = round(statistics.median(s["ready_s"] for s in starts), 2)
    row["ready_s_all"] = [round(s["ready_s"], 2) for s in starts]
    row["rss_mb"] = round(max(s["rss_mb"] for s in starts), 0)
    row["device"] = starts[0]["device"]
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| bundle | flavour (torch) | size MB (artifacts) | exec -> ready s (median; all) | RSS after warm-up MB | served on |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ready = f"{r['ready_s']} ({', '.join(map(str, r['ready_s_all']))})" if "ready_s" in r else "-"
        lines.append(
            f"| {r['bundle']} | {r['flavour']} ({r['torch']}) | {r['size_mb']:.0f} ({r['artifacts_mb']:.0f}) "
            f"| {ready} | {r.get('rss_mb', '-')} | {r.get('device', '-')} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    rows = []
    for name, bundle in BUNDLES.items():
        if not (bundle / "bundle_info.json").is_file():
            print(f"{name}: not built ({bundle.relative_to(ROOT)}), skipped")
            continue
        print(f"{name}: measuring ...", flush=True)
        rows.append(measure(name, bundle, args.runs))
    by = {r["bundle"]: r for r in rows}
    notes = [f"Machine: {os.cpu_count()} cores; aims for the CPU onedir bundle: ready <= {AIMS['ready_s']} s, "
             f"RSS <= {AIMS['rss_mb']:.0f} MB, size <= {AIMS['size_mb']:.0f} MB."]  # fmt: skip
    cpu = by.get("cpu onedir")
    if cpu:
        met = [k for k in ("ready_s", "rss_mb", "size_mb") if cpu[k] <= AIMS[k]]
        notes.append(f"CPU onedir meets {len(met)}/3 aims ({', '.join(met) or 'none'}).")
    if cpu and "cpu onedir, no excludes" in by:
        before = by["cpu onedir, no excludes"]["size_mb"]
        notes.append(
            f"Excluding build-only packages and unused torch parts: {before:.0f} MB -> {cpu['size_mb']:.0f} MB."
        )
    if cpu and "cpu onefile" in by:
        extra = by["cpu onefile"]["ready_s"] - cpu["ready_s"]
        notes.append(f"Onefile start-up cost (unpacking to a temp folder on every start): +{extra:.1f} s to ready.")
    text = (
        f"# Bundle figures\n\nWritten by `python -m bench.bundle_figures`.\n\n{machine_line()}\n\n"
        + table(rows)
        + "\n\n"
        + "\n".join(f"- {n}" for n in notes)
        + "\n"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bundle_figures.md").write_text(text)
    (RESULTS / "bundle_figures.json").write_text(json.dumps(rows, indent=2))
    print(text)


if __name__ == "__main__":
    main()
