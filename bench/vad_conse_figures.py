"""silero VAD TorchScript vs ONNX Runtime (time per second of audio), and the RSS of a server serving
silero + ConSE + EfficientNet + MiniLM with torch loaded vs without (issue 11).

    python -m bench.vad_conse_figures --ort SETTINGS --torch SETTINGS [--rounds 2]

``--ort``: settings whose four models all serve ONNX Runtime (silero and ConSE built with
artifact_backend auto or onnxruntime); ``--torch``: the same models with silero (and ConSE) built
for artifact_backend = torchscript, so the server loads torch as it did before. Both timings and
servers alternate, so a change in machine load hits both alike. RSS: VmRSS (and the peak, VmHWM)
of the server process after warm-up and two requests per route. Prints JSON.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tests.serving import request

ROOT = Path(__file__).resolve().parents[1]
SPEECH_WAV = ROOT / "tests" / "media" / "speech.wav"
SILERO = ROOT / "build" / "models" / "silero_vad" / "data"


def speech_clip(repeat: int = 4) -> np.ndarray:
    from edge_mm.media.audio import decode_wav, resample

    samples, rate = decode_wav(SPEECH_WAV.read_bytes(), max_bytes=50_000_000, max_seconds=60)
    one = np.concatenate([np.zeros(16_000, np.float32), resample(samples, rate, 16_000)])
    return np.concatenate([one] * repeat)


def vad_times(rounds: int = 7) -> dict[str, Any]:
    """ms per second of audio, median of ``rounds`` alternating passes: TorchScript at 1 and at the
    runtime's default threads, ONNX Runtime (one thread, as served)."""
    import torch

    from edge_mm import device
    from edge_mm.runtime.silero_vad import SileroOnnx, speech_probabilities

    clip = speech_clip()
    seconds = len(clip) / 16_000
    jit = torch.jit.load(str(SILERO / "silero_vad.jit"), map_location="cpu").eval()
    onnx = SileroOnnx.load(SILERO / "silero_vad.onnx")
    intra = device.cpu_threads(os.cpu_count() or 1, 0, 0)[0]
    runs: dict[str, tuple[Any, int]] = {"torchscript_1_thread": (jit, 1), "onnxruntime": (onnx, 1)}
    if intra > 1:
        runs[f"torchscript_{intra}_threads"] = (jit, intra)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(rounds + 1):
        for name, (model, threads) in runs.items():
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            speech_probabilities(clip, model)
            if i:  # the first pass warms
                times[name].append((time.perf_counter() - t0) * 1000 / seconds)
    med = {k: round(statistics.median(v), 3) for k, v in times.items()}
    return {
        "audio_seconds": round(seconds, 2),
        "ms_per_audio_second": med,
        "torchscript_1_thread_over_onnxruntime": round(med["torchscript_1_thread"] / med["onnxruntime"], 2),
    }


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def server_rss(settings: Path) -> dict[str, Any]:
    """Start ``python -m edge_mm serve``, warm it with two requests per route, read its memory, stop it."""
    env = dict(os.environ, EDGE_MM_SERVER_HOST="127.0.0.1", EDGE_MM_SERVER_PORT="0", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "edge_mm", "--config", str(settings), "serve"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        base = None
        while base is None:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"server exited: {proc.wait()}")
            if line.startswith("edge-mm listening on "):
                base = line.split()[-1].strip()
        while request(base + "/health/ready")[0] != 200:
            time.sleep(0.05)
        ready_s = time.perf_counter() - t0
        wav = base64.b64encode(SPEECH_WAV.read_bytes()).decode()
        png = base64.b64encode((ROOT / "edge_mm" / "build" / "data" / "sample_cat.jpg").read_bytes()).decode()
        calls = [
            ("/v1/voice-activity", {"audio": wav}),
            ("/v1/zero-shot-image-classification", {"image": png, "labels": ["a cat", "a dog", "a car"]}),
            ("/v1/embeddings", {"input": ["the man plays guitar", "a cat sleeps"]}),
            ("/v1/image-classification", {"image": png}),
        ]
        for _ in range(2):
            for route, body in calls:
                status, _, answer = request(base + route, body)
                assert status == 200, (route, answer)
        info = request(base + "/info")[2]
        return {
            "torch_loaded": info["torch_version"] is not None,
            "backends": {name: m["backend"] for name, m in info["models"].items()},
            "ready_s": round(ready_s, 2),
            "rss_mb": round(_status_kb(proc.pid, "VmRSS") / 1024, 1),
            "peak_mb": round(_status_kb(proc.pid, "VmHWM") / 1024, 1),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ort", type=Path, required=True)
    p.add_argument("--torch", type=Path, required=True)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    rows: dict[str, list[dict[str, Any]]] = {"onnxruntime": [], "torch": []}
    for _ in range(args.rounds):
        rows["onnxruntime"].append(server_rss(args.ort))
        rows["torch"].append(server_rss(args.torch))
    rss = {k: {"runs": v, "rss_mb_max": max(r["rss_mb"] for r in v)} for k, v in rows.items()}
    print(json.dumps({"silero": vad_times(), "server": rss}, indent=1))


if __name__ == "__main__":
    main()
