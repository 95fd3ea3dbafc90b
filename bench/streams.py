"""Camera streams: how many streams MTCNN keeps up with at 2 fps before frames are skipped; CPU and
RSS per stream; event latency from the frame to the MQTT message; REST p50 with 4 streams vs none.

    python -m bench.streams [--counts 1,4,8,12,16] [--seconds 15]   # from the repo root; needs mosquitto

Streams read tests/media/stream_clip.mp4 (320x240 H.264, 10 fps, a face for 5 s of every 10), looped
at its own rate, in this process, through the registry's MTCNN (the repo's settings, artifacts in
build/artifacts; ``edge-mm build`` first). REST requests are /v1/face-detection on one frame of the
clip through the Flask app in the same process (no HTTP), so the ratio shows the streams' effect on
the model alone. Results: bench/results/streams.md and .json.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.machine import machine_line

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "tests" / "media" / "stream_clip.mp4"
OUT = ROOT / "bench" / "results"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def settings_for(folder: Path, extra: str = ""):  # type: ignore[no-untyped-def]
    from edge_mm.config import load_settings

    text = (ROOT / "settings.toml").read_text()
    head, *blocks = text.split("[[models]]")
    text = head + "".join("[[models]]" + b for b in blocks if 'name = "mtcnn"' in b)
    text = text.replace('artifacts_dir = "build/artifacts"', f'artifacts_dir = "{ROOT / "build/artifacts"}"')
    text = text.replace("[runtime]\n", f'[runtime]\nfaces_db = "{folder / "faces.db"}"\n', 1)
    path = folder / "settings.toml"
    path.write_text(text + f'\n[events]\nsnapshot_dir = "{folder / "snaps"}"\nmax_streams = 64\n' + extra)
    return load_settings(path, env={})


def clip(i: int, fps: float) -> dict[str, Any]:
    return {"id": f"cam{i}", "url": str(CLIP), "fps": fps, "min_frames": 2, "end_after_s": 1.0}


def capacity(registry: Any, counts: list[int], seconds: float) -> list[dict[str, Any]]:
    from edge_mm.streams.manager import StreamManager

    rows = []
    for n in counts:
        with tempfile.TemporaryDirectory() as d:
            manager = StreamManager(settings_for(Path(d)), registry)
            manager.start()
            rss0 = rss_mb()
            for i in range(n):
                manager.add(clip(i, 2.0))
            time.sleep(3)  # connect, first frames
            before = [manager.describe(f"cam{i}")["status"] for i in range(n)]
            c0, t0 = cpu_s(), time.monotonic()
            time.sleep(seconds)
            c1, t1 = cpu_s(), time.monotonic()
            after = [manager.describe(f"cam{i}")["status"] for i in range(n)]
            rss1 = rss_mb()
            manager.stop(5)

            pairs = list(zip(after, before, strict=True))
            analysed = sum(int(a["frames_analysed"]) - int(b["frames_analysed"]) for a, b in pairs)
            skipped = sum(int(a["frames_skipped"]) - int(b["frames_skipped"]) for a, b in pairs)
            ms = sum(float(a["inference_ms_sum"]) - float(b["inference_ms_sum"]) for a, b in pairs)
            rows.append(
                {
                    "streams": n,
                    "wanted": round(n * 2.0 * seconds),
                    "analysed": analysed,
                    "skipped": skipped,
                    "skipped_pct": round(100 * skipped / max(1, analysed + skipped), 1),
                    "inference_ms_mean": round(ms / max(1, analysed), 1),
                    "cpu_pct": round(100 * (c1 - c0) / (t1 - t0), 1),
                    "cpu_pct_per_stream": round(100 * (c1 - c0) / (t1 - t0) / n, 1),
                    "rss_mb_per_stream": round((rss1 - rss0) / n, 2),
                }
            )
            print(rows[-1], flush=True)
    return rows


def latency(registry: Any, seconds: float) -> dict[str, Any]:
    import shutil
    import socket
    import subprocess

    import paho.mqtt.client as paho

    from edge_mm.streams.manager import StreamManager

    with tempfile.TemporaryDirectory() as d, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        conf = Path(d) / "m.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        broker = subprocess.Popen(
            [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL
        )
        time.sleep(0.5)
        got: list[float] = []
        lock = threading.Lock()

        def on_message(c: Any, u: Any, msg: Any) -> None:
            event = json.loads(msg.payload)
            if event["type"] == "start":
                with lock:
                    got.append(1000 * (time.time() - event["frame_time"]))

        sub = paho.Client(paho.CallbackAPIVersion.VERSION2)
        sub.on_message = on_message
        sub.connect("127.0.0.1", port)
        sub.subscribe("edge-mm/+/events", qos=1)
        sub.loop_start()
        manager = StreamManager(settings_for(Path(d), f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n'), registry)
        manager.start()
        for i in range(2):
            manager.add(clip(i, 5.0))
        time.sleep(seconds)
        manager.stop(5)
        sub.loop_stop()
        broker.terminate()
        broker.wait()
    return {
        "events": len(got),
        "p50_ms": round(statistics.median(got), 1) if got else None,
        "max_ms": round(max(got), 1) if got else None,
    }


def rest_p50(registry: Any, rounds: int, per_round: int) -> dict[str, Any]:
    import av

    from edge_mm.api import create_app
    from edge_mm.streams.manager import StreamManager

    with av.open(str(CLIP)) as c:
        frame = next(f for i, f in enumerate(c.decode(video=0)) if i == 50)
    buf = io.BytesIO()
    frame.to_image().save(buf, "JPEG")
    body = {"image": base64.b64encode(buf.getvalue()).decode()}
    with tempfile.TemporaryDirectory() as d:
        settings = settings_for(Path(d))
        manager = StreamManager(settings, registry)
        client = create_app(settings, registry, stream_manager=manager).test_client()
        manager.start()
        times: dict[str, list[float]] = {"none": [], "4 streams": []}
        for _ in range(rounds):  # ABAB: both conditions see the same drift
            for cond in times:
                if cond == "4 streams":
                    for i in range(4):
                        manager.add(clip(i, 2.0))
                    time.sleep(1.5)
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    assert client.post("/v1/face-detection", json=body).status_code == 200
                    times[cond].append(1000 * (time.perf_counter() - t0))
                if cond == "4 streams":
                    for i in range(4):
                        manager.remove(f"cam{i}")
        manager.stop(5)
    p50 = {k: round(statistics.median(v), 1) for k, v in times.items()}
    p90 = {k: round(statistics.quantiles(v, n=10)[-1], 1) for k, v in times.items()}
    return {
        "p50_ms": p50,
        "p90_ms": p90,
        "ratio_p50": round(p50["4 streams"] / p50["none"], 2),
        "n": len(times["none"]),
    }


def reconnects(registry: Any, times: int = 100) -> dict[str, Any]:
    """RSS and threads before and after ``times`` reconnects of an RTSP URL where nothing listens."""
    import socket

    from edge_mm.streams import reader
    from edge_mm.streams.manager import StreamManager

    reader.BACKOFF_FIRST_S, reader.BACKOFF_MAX_S = 0.001, 0.002
    with tempfile.TemporaryDirectory() as d, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        manager = StreamManager(settings_for(Path(d)), registry)
        manager.start()
        manager.add({"id": "dead", "url": f"rtsp://127.0.0.1:{port}/x"})
        while manager.describe("dead")["status"]["reconnects"] < 10:  # warm: the first failures allocate
            time.sleep(0.01)
        rss0, threads0 = rss_mb(), threading.active_count()
        start = manager.describe("dead")["status"]["reconnects"]
        while manager.describe("dead")["status"]["reconnects"] < start + times:
            time.sleep(0.01)
        rss1, threads1 = rss_mb(), threading.active_count()
        manager.stop(5)
    return {
        "reconnects": times,
        "rss_mb_before": round(rss0, 1),
        "rss_mb_after": round(rss1, 1),
        "threads": [threads0, threads1],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="1,4,8,12,16")
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()
    from edge_mm.runtime.registry import load_registry
    from edge_mm.tasks.table import LOADERS, OPTIONS

    with tempfile.TemporaryDirectory() as d:
        registry = load_registry(settings_for(Path(d)), LOADERS, options=OPTIONS)
    registry.warm_all()
    cap = capacity(registry, [int(x) for x in args.counts.split(",")], args.seconds)
    lat = latency(registry, 25.0)
    print(lat, flush=True)
    rest = rest_p50(registry, rounds=3, per_round=30)
    print(rest, flush=True)
    leak = reconnects(registry)
    print(leak, flush=True)
    load = os.getloadavg()
    result = {
        "machine": machine_line(),
        "load_avg": load,
        "capacity": cap,
        "latency": lat,
        "rest": rest,
        "reconnects": leak,
    }
    (OUT / "streams.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Camera streams (bench/streams.py)",
        "",
        machine_line(),
        "",
        f"Load average at the end of the run: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min; other work"
        " shared the machine, so CPU % of this process and the ms are under that load).",
        "",
        "MTCNN (the repo's settings, ONNX Runtime) on tests/media/stream_clip.mp4 (320x240 H.264, 10 fps, looped",
        "at its own rate), analysed at 2 fps per stream, in one process. Streams hold at most",
        "max_in_flight - 1 model slots; a stream waits up to half its frame interval for another stream's",
        "turn, never for a REST request (a model slot is taken only when free with no request queued); a",
        "tick that gets no slot is skipped. The first stream's RSS includes one-off costs (the decoder, the",
        "model's buffers for the frame size); the rows after it show the cost of each further stream.",
        "",
        "| streams | frames wanted | analysed | skipped | skipped % | inference ms (mean) | CPU % (of one core) | CPU % per stream | RSS MB per stream |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in cap:
        lines.append(
            f"| {r['streams']} | {r['wanted']} | {r['analysed']} | {r['skipped']} | {r['skipped_pct']} | "
            f"{r['inference_ms_mean']} | {r['cpu_pct']} | {r['cpu_pct_per_stream']} | {r['rss_mb_per_stream']} |"
        )
    lines += [
        "",
        f"Event latency, frame read -> MQTT message received (start events, 2 streams at 5 fps, mosquitto on loopback): "
        f"p50 {lat['p50_ms']} ms, max {lat['max_ms']} ms over {lat['events']} events.",
        "",
        f"REST /v1/face-detection (one 320x240 frame, in-process, sequential, {rest['n']} requests per condition, ABAB):",
        f"p50 {rest['p50_ms']['none']} ms with no stream, {rest['p50_ms']['4 streams']} ms with 4 streams at 2 fps "
        f"(ratio {rest['ratio_p50']}); p90 {rest['p90_ms']['none']} vs {rest['p90_ms']['4 streams']} ms.",
        "",
        f"{leak['reconnects']} reconnects of an RTSP source where nothing listens: RSS {leak['rss_mb_before']} -> "
        f"{leak['rss_mb_after']} MB, threads {leak['threads'][0]} -> {leak['threads'][1]}.",
        "",
    ]
    (OUT / "streams.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
