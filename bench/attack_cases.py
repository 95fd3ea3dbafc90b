"""The hard-limits table: requests that once bought gigabytes or tens of seconds, measured on a live server.

    python -m bench.attack_cases --url http://127.0.0.1:8080 --pid <server pid> [--out bench/results/attack_cases.md]

Each case is sent once; the server's peak RSS is reset before it (``/proc/<pid>/clear_refs``)
and read after (``VmHWM``), so "peak added" is what that request cost. tests/test_budgets.py
runs the same cases against a test server with generous bounds.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.machine import machine_line

MiB = 1024 * 1024


def flat_png(width: int, height: int) -> bytes:
    """A ``width`` x ``height`` grey PNG of a few KB (rows of zeros compress to nearly nothing)."""
    raw = zlib.compress((b"\x00" + b"\x80" * 3 * width) * height, 9)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def flat_mp4(width: int, height: int, frames: int = 2) -> bytes:
    """A short MPEG-4 clip of flat grey ``width`` x ``height`` frames."""
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=2)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        grey = np.full((height, width, 3), 128, np.uint8)
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(grey, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def odd_rate_wav(rate: int = 767_951, n: int = 20_000) -> bytes:
    """8-bit mono WAV at an odd sample rate (20 KB)."""
    body = bytes((128 + (i % 50)) & 0xFF for i in range(n))
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate, 1, 8)
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", len(riff)) + riff


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = "edgemmattack"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    for name, filename, data in files:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n\r\n'
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@dataclass(frozen=True)
class Case:
    name: str
    route: str
    make: Callable[[], tuple[bytes, str]]  # -> (body, content type)
    expect: tuple[int, ...]  # acceptable statuses


def _json(obj: object) -> tuple[bytes, str]:
    return json.dumps(obj).encode(), "application/json"


CASES = [
    Case(
        "zero-shot, template '{:,>1000000}{{}}' and 3 labels",
        "/v1/zero-shot-classification",
        lambda: _json({"inputs": "a text", "labels": ["a", "b", "c"], "hypothesis_template": "{:,>1000000}{{}}"}),
        (200,),  # plain text with one '{}': a 17-character hypothesis
    ),
    Case(
        "zero-shot, a 200,000-character template",
        "/v1/zero-shot-classification",
        lambda: _json({"inputs": "a text", "labels": ["a", "b", "c"], "hypothesis_template": "x" * 200_000 + "{}"}),
        (413,),
    ),
    Case(
        "8 flat 6000x6000 PNGs to /v1/image-embeddings",
        "/v1/image-embeddings",
        lambda: multipart({}, [("image", f"{i}.png", flat_png(6000, 6000)) for i in range(8)]),
        (413,),
    ),
    Case(
        "a 6000x6000 MPEG-4 clip to /v1/video, every_seconds=0.5, max_frames=16",
        "/v1/video",
        lambda: multipart({"every_seconds": "0.5", "max_frames": "16"}, [("video", "v.mp4", flat_mp4(6000, 6000))]),
        (413,),
    ),
    Case(
        "a 2000x2000 PNG to /v1/face-detection, max_side=2000, min_face_size=4",
        "/v1/face-detection",
        lambda: multipart({"max_side": "2000", "min_face_size": "4"}, [("image", "f.png", flat_png(2000, 2000))]),
        (422,),
    ),
    Case(
        "an 8-bit WAV at 767,951 Hz to /v1/voice-activity",
        "/v1/voice-activity",
        lambda: multipart({}, [("audio", "a.wav", odd_rate_wav())]),
        (200,),
    ),
]


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def send(url: str, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def run_case(base: str, pid: int, case: Case, headers: dict[str, str] | None = None) -> dict:
    body, ctype = case.make()
    before = rss_kb(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    t0 = time.perf_counter()
    status, answer = send(base + case.route, body, ctype, headers)
    seconds = time.perf_counter() - t0
    peak = rss_kb(pid, "VmHWM")
    return {
        "case": case.name,
        "route": case.route,
        "body_bytes": len(body),
        "status": status,
        "expected": list(case.expect),
        "seconds": round(seconds, 3),
        "peak_added_mb": round((peak - before) / 1024, 1),
        "rss_after_mb": round(rss_kb(pid, "VmRSS") / 1024, 1),
        "message": (answer.get("error") or {}).get("message") if isinstance(answer.get("error"), dict) else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--out", type=Path, default=Path("bench/results/attack_cases.md"))
    a = p.parse_args()
    rows = [run_case(a.url, a.pid, c) for c in CASES]
    for r in rows:
        print(f"{r['status']} {r['seconds']:6.2f} s  +{r['peak_added_mb']:7.1f} MB  {r['case']}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "# Hard limits: the attack table, rerun",
        "",
        f"`python -m bench.attack_cases` against a live server ({time.strftime('%Y-%m-%d')}); peak RSS reset per case.",
        "",
        machine_line(),
        "",
        "| request | body | status | time | peak RSS added |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['case']} | {r['body_bytes'] / 1024:.0f} KB | {r['status']} | {r['seconds']:.2f} s | "
        f"{r['peak_added_mb']:.1f} MB |"
        for r in rows
    ]
    a.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
