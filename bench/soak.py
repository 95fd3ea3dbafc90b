"""Soak: many clients for a bounded time against a real server on 127.0.0.1, valid and invalid
requests mixed across the served routes. Passes when every request got an answer, valid ones
never got a 5xx, and invalid ones always got a 4xx. Reports resident memory growth.

    python -m bench.soak --minutes 10 --concurrency 32
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import random
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.machine import machine
from bench.servers import ROOT, edge_mm_argv, free_port, rss_mb, server


def _jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (120, 80, 40)).save(buf, "JPEG")
    return buf.getvalue()


def _multipart(field: str, data: bytes, filename: str, ctype: str) -> tuple[bytes, str]:
    boundary = "soakboundary7d3"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def request_mix(routes: set[str]) -> list[tuple[str, str, bytes, str, bool]]:
    """(name, path, body, content type, valid) for every served route we know how to call."""
    j = "application/json"
    mix = []
    if "embeddings" in routes:
        mix += [
            (
                "embed",
                "/v1/embeddings",
                json.dumps({"inputs": ["a short sentence", "another one here"]}).encode(),
                j,
                True,
            ),
            ("embed-bad-json", "/v1/embeddings", b"{oops", j, False),
            ("embed-empty", "/v1/embeddings", json.dumps({"inputs": ""}).encode(), j, False),
            ("embed-too-many", "/v1/embeddings", json.dumps({"inputs": ["x"] * 1000}).encode(), j, False),
        ]
    if "zero-shot-classification" in routes:
        body = {"inputs": "the match ended in a draw", "labels": ["sport", "politics", "food"]}
        mix += [
            ("zero-shot", "/v1/zero-shot-classification", json.dumps(body).encode(), j, True),
            ("zero-shot-no-labels", "/v1/zero-shot-classification", json.dumps({"inputs": "x"}).encode(), j, False),
        ]
    if "image-classification" in routes:
        jpeg = _jpeg()
        body, ctype = _multipart("image", jpeg, "a.jpg", "image/jpeg")
        bad, bad_ctype = _multipart("image", jpeg[: len(jpeg) // 2], "a.jpg", "image/jpeg")
        junk, junk_ctype = _multipart("image", b"not an image at all", "a.bin", "application/octet-stream")
        mix += [
            ("image", "/v1/image-classification", body, ctype, True),
            ("image-truncated", "/v1/image-classification", bad, bad_ctype, False),
            ("image-junk", "/v1/image-classification", junk, junk_ctype, False),
        ]
    mix.append(("no-route", "/v1/nope", b"{}", j, False))
    return mix


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--max-requests", type=int, default=2_000_000)
    p.add_argument("--config", type=Path, default=ROOT / "settings.toml")
    a = p.parse_args()
    port = free_port()
    env = {"EDGE_MM_SERVER_PORT": str(port), "EDGE_MM_SERVER_HOST": "127.0.0.1", "EDGE_MM_SERVER_THREADS": "48"}
    with server(edge_mm_argv(a.config), port, env=env) as (base, pid):
        u = urlsplit(base)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.request("GET", "/v1/models")
        models = json.loads(conn.getresponse().read())["models"]
        routes = {r for m in models for r in m["routes"]}
        mix = request_mix(routes)
        rss0 = rss_mb(pid)
        counts: dict[tuple[str, int], int] = {}
        failures: list[str] = []
        lock = threading.Lock()
        sent = [0]
        end = time.monotonic() + a.minutes * 60

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < end:
                with lock:
                    if sent[0] >= a.max_requests:
                        return
                    sent[0] += 1
                name, path, body, ctype, valid = rng.choice(mix)
                try:
                    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
                    c.request("POST", path, body=body, headers={"Content-Type": ctype})
                    r = c.getresponse()
                    r.read()
                    status = r.status
                    c.close()
                except OSError as exc:
                    status = 0
                    with lock:
                        failures.append(f"{name}: no answer ({exc})")
                ok = (status == 200) if valid else (400 <= status < 500)
                with lock:
                    counts[(name, status)] = counts.get((name, status), 0) + 1
                    if status and not ok:
                        failures.append(f"{name}: {status}")

        samples: list[tuple[float, float]] = []

        def sample_rss() -> None:
            while time.monotonic() < end:
                samples.append((round(time.monotonic() - t0), round(rss_mb(pid))))
                time.sleep(10)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(a.concurrency)]
        threads.append(threading.Thread(target=sample_rss))
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        rss1 = rss_mb(pid)
    total = sum(counts.values())
    print(f"soak: {total} requests in {elapsed:.0f} s ({total / elapsed:.1f}/s) at concurrency {a.concurrency}")
    for (name, status), n in sorted(counts.items()):
        print(f"  {name:24s} {status}: {n}")
    print(f"RSS after warm-up {rss0:.0f} MB, at the end {rss1:.0f} MB, growth {rss1 - rss0:+.0f} MB")
    half = [mb for t, mb in samples if t >= elapsed / 2]
    if half:
        print(
            f"RSS over the second half: {min(half):.0f}..{max(half):.0f} MB (growth there {half[-1] - half[0]:+.0f} MB)"
        )
    print("RSS samples (s, MB):", samples)
    print(f"failures: {len(failures)}" + ("" if not failures else "\n  " + "\n  ".join(failures[:20])))
    summary = {
        "requests": total,
        "seconds": round(elapsed),
        "concurrency": a.concurrency,
        "rss_start_mb": round(rss0),
        "rss_end_mb": round(rss1),
        "failures": len(failures),
        "rss_samples": samples,
        "counts": {f"{k[0]} {k[1]}": v for k, v in sorted(counts.items())},
        "machine": machine(),
    }
    (ROOT / "bench" / "results" / "soak.json").write_text(json.dumps(summary, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
