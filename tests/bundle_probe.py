"""Start a bundle's executable, call every route over 127.0.0.1, report as JSON (one line on stdout).

Run it inside the network namespace that has only loopback (scripts/offline_check.sh does)::

    python -m tests.bundle_probe dist/edge-mm/edge-mm [--strace LOG] [--config FILE]

With ``--strace`` the executable runs under ``strace -f`` recording connect/sendto/sendmsg, and
the report lists every peer address it tried (``peers``) and those that are not loopback
(``outbound``). The probe itself (this Python) is not traced: only the bundle is.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.serving import ROOT, request, running_server
from tests.vision_fixtures import still_clip

MEDIA = ROOT / "edge_mm" / "build" / "data"  # sample images the repo ships (the probe runs from a checkout)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _tone_wav(seconds: float = 1.0, rate: int = 16000) -> str:
    """A base64 16-bit mono WAV: a 440 Hz tone (the route must answer; speech or not is the model's call)."""
    import wave

    frames = bytes(
        b for i in range(int(seconds * rate))
        for b in int(8000 * math.sin(2 * math.pi * 440 * i / rate)).to_bytes(2, "little", signed=True)
    )  # fmt: skip
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate), w.writeframes(frames)
    return base64.b64encode(buf.getvalue()).decode()


def _labels(body: dict) -> str:
    return json.dumps(body["results"][0]).lower()


def _text_png(size: tuple[int, int] = (900, 420)) -> str:
    """The OCR build's own sample (two lines in Pillow's built-in font) as base64 PNG, ``size`` px.

    The detector scales an image's shorter side up to 736 px, so its cost follows the aspect ratio: the
    default 900 x 420 runs at 1568 x 736, a 560 px square at 736 x 736 (half the pixels), and a request's
    ``max_side = 640`` caps it at 640 x 288. Under qemu-user (tests/arm64_probe.py) the two OCR routes took
    about 160 s each at 1568 x 736; natively 0.7 s, 0.3 s (square) and 0.15 s (capped)."""
    from edge_mm.build.ocr import SAMPLE_LINES, render_text

    buf = io.BytesIO()
    render_text(SAMPLE_LINES, size=size).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


OCR_LINES = ["KA-4721", "Edge inference, offline."]


def _objects(body: dict) -> str:
    return " ".join(o["label"] for o in body["results"][0]["objects"])


# One request per route that answers with a checkable result: (route, body, check(body) -> problem or None).
SAMPLES = {
    "embeddings": (
        {
            "inputs": [
                "A man is playing a guitar.",
                "Someone plays an instrument.",
                "The stock market fell sharply today.",
            ]
        },
        lambda b: (
            None
            if _cos(b, 0, 1) > 0.5 > _cos(b, 0, 2) + 0.3
            else f"similarities {_cos(b, 0, 1):.3f} / {_cos(b, 0, 2):.3f}"
        ),
    ),
    "zero-shot-classification": (
        {"inputs": ["My dog loves chasing the ball in the park."], "labels": ["animals", "finance", "cooking"]},
        lambda b: None if b["results"][0][0]["label"] == "animals" else f"top label {b['results'][0][0]['label']}",
    ),
    "image-classification": (
        lambda: {"image": _b64(MEDIA / "sample_coffee.jpg")},
        lambda b: None if "espresso" in _labels(b) or "cup" in _labels(b) else f"coffee -> {_labels(b)[:200]}",
    ),
    "image-embeddings": (
        lambda: {"images": [_b64(MEDIA / "sample_cat.jpg"), _b64(MEDIA / "sample_coffee.jpg")]},
        lambda b: None if len(b["data"]) == 2 and b["dim"] > 0 else f"embeddings {str(b)[:200]}",
    ),
    "face-detection": (
        lambda: {"images": [_b64(MEDIA / "sample_astronaut.jpg"), _b64(MEDIA / "sample_coffee.jpg")]},
        lambda b: (
            None
            if len(json.dumps(b["results"][0]).split('"box"')) == 2 and '"box"' not in json.dumps(b["results"][1])
            else f"faces {str(b['results'])[:300]}"
        ),
    ),
    "zero-shot-image-classification": (
        lambda: {"image": _b64(MEDIA / "sample_cat.jpg"), "labels": ["a cat", "a car", "a cup of coffee"]},
        lambda b: None if "cat" in json.dumps(b["results"][0])[:40] else f"cat -> {str(b['results'][0])[:200]}",
    ),
    "voice-activity": (
        lambda: {"audio": _tone_wav()},
        lambda b: None if "segments" in b and 0.9 < b["duration_s"] < 1.1 else f"vad {str(b)[:200]}",
    ),
    "video": (
        lambda: {
            "video": base64.b64encode(still_clip(MEDIA / "sample_astronaut.jpg", 2, fps=2, side=192)).decode(),
            "every_seconds": 1,
            "tasks": ["faces"],
        },
        lambda b: (
            None
            if b["video"]["frames_sampled"] == 2 and b["aggregate"]["faces"]["frames_with_faces"] == 2
            else f"video {str(b)[:300]}"
        ),
    ),
    "vision/face": (  # DeepStack-compatible routes
        lambda: {"image": _b64(MEDIA / "sample_astronaut.jpg")},
        lambda b: None if b.get("success") and len(b["predictions"]) == 1 else f"deepstack face {str(b)[:200]}",
    ),
    "vision/scene": (
        lambda: {"image": _b64(MEDIA / "sample_coffee.jpg")},
        lambda b: None if b.get("success") and b.get("label") else f"deepstack scene {str(b)[:200]}",
    ),
    "object-detection": (
        lambda: {"image": _b64(MEDIA / "sample_cat.jpg")},
        lambda b: None if "cat" in _objects(b).split() else f"cat photo -> objects {_objects(b)!r}",
    ),
    "vision/detection": (
        lambda: {"image": _b64(MEDIA / "sample_astronaut.jpg")},
        lambda b: (
            None
            if b.get("success") and "person" in [p["label"] for p in b["predictions"]]
            else f"deepstack detection {str(b)[:200]}"
        ),
    ),
    "ocr": (
        lambda: {"image": _text_png(), "max_side": 640},  # a request's own option, and a quarter of the pixels
        lambda b: None if [x["text"] for x in b["results"][0]["lines"]] == OCR_LINES else f"ocr {str(b)[:300]}",
    ),
    "vision/ocr": (
        lambda: {"image": _text_png((560, 560))},  # the form takes no options: a square image keeps it small
        lambda b: None if b.get("success") and OCR_LINES[0] in json.dumps(b) else f"vision/ocr {str(b)[:300]}",
    ),
}

# Routes with state (the face store): called in this order, each (route, body, check) after the one before.
FACE_USER = "probe-astronaut"


def _face_flow(prefix: str, deepstack: bool) -> list[tuple[str, object, object]]:
    """Register the astronaut, find it listed, recognize it, delete it, find it gone."""

    def users(b: dict) -> list[str]:
        return [u if isinstance(u, str) else u["userid"] for u in (b.get("faces") if deepstack else b["users"])]

    def recognized(b: dict) -> list[str]:
        return [p["userid"] for p in b["predictions"]] if deepstack else [f["userid"] for f in b["results"][0]["faces"]]

    image = {"image": _b64(MEDIA / "sample_astronaut.jpg")}
    return [
        (f"{prefix}/register", {**image, "userid": FACE_USER}, lambda b: None),
        (f"{prefix}/list", {}, lambda b: None if FACE_USER in users(b) else f"list {str(b)[:200]}"),
        (f"{prefix}/recognize", image, lambda b: None if recognized(b) == [FACE_USER] else f"recognize {str(b)[:300]}"),
        (f"{prefix}/delete", {"userid": FACE_USER}, lambda b: None),
        (f"{prefix}/list", {}, lambda b: None if FACE_USER not in users(b) else f"still listed {str(b)[:200]}"),
    ]


FACE_FLOWS = {"faces": False, "vision/face": True}  # route prefix -> DeepStack's answer shapes


# Other surfaces the executable must serve offline: path -> the least body size (bytes) that is right.
PAGES = {
    "/openapi.json": 1000,
    "/docs": 100,
    "/docs/swagger-ui-bundle.js": 1000,
    "/metrics": 1000,  # Prometheus text (edge_mm_* families)
    "/v2": 20,  # Open Inference Protocol server metadata
    "/v2/health/ready": 0,
}


def _probe_v2_infer(base: str, models: list[dict], report: dict) -> None:
    """One Open Inference v2 inference (a BYTES text tensor to the first embeddings model)."""
    name = next((m["name"] for m in models if m["task"] == "embeddings"), None)
    if name is None:
        return
    tensor = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hello from the edge"]}
    status, _, answer = request(f"{base}/v2/models/{name}/infer", {"inputs": [tensor]})
    report["routes"][f"/v2/models/{name}/infer"] = status
    outputs = answer.get("outputs") or [{}]
    if status != 200 or outputs[0].get("datatype") != "FP32":
        report["problems"].append(f"POST /v2/models/{name}/infer -> {status}: {str(answer)[:200]}")


def _check_pages(base: str, report: dict) -> None:
    """The API document and its page (with assets), /metrics and the Open Inference v2 routes: served offline."""
    for path, least in PAGES.items():
        status, size = _fetch(base + path)
        report["routes"][path] = status
        if status != 200 or size < least:
            report["problems"].append(f"GET {path} -> {status}, {size} bytes")


def _fetch(url: str) -> tuple[int, int]:
    """(status, body bytes) of a GET whose body need not be JSON."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, len(r.read())
    except urllib.error.HTTPError as e:
        return e.code, 0


def _cos(body: dict, i: int, j: int) -> float:
    a, b = body["data"][i]["embedding"], body["data"][j]["embedding"]
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


_ADDR = re.compile(r'sin_addr=inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"|sa_family=(AF_\w+)')


def peers(strace_log: Path) -> list[str]:
    """Every address (or non-IP family) the traced process passed to connect/sendto/sendmsg."""
    found = []
    for line in strace_log.read_text(errors="replace").splitlines():
        if not any(f"{call}(" in line for call in ("connect", "sendto", "sendmsg")):
            continue
        for v4, v6, family in _ADDR.findall(line):
            if v4 or v6 or family not in ("AF_INET", "AF_INET6"):  # IP families count by their address
                found.append(v4 or v6 or family)
    return found


def is_loopback(addr: str) -> bool:
    return addr.startswith("127.") or addr in ("::1", "AF_UNIX", "AF_LOCAL", "AF_NETLINK")


def _probe_pages(base: str, report: dict) -> None:
    """The playground page and its script: package data, which the frozen executable must carry."""
    for path, marker in (("/", b"edge-mm playground"), ("/playground/playground.js", b"/v1/models")):
        try:
            with urllib.request.urlopen(base + path, timeout=30) as page:
                status, served = page.status, page.read()
        except urllib.error.HTTPError as e:
            status, served = e.code, e.read()
        report["routes"][path] = status
        if status != 200 or marker not in served:
            report["problems"].append(f"GET {path} -> {status}, {len(served)} bytes without {marker!r}")


def _probe_faces(base: str, routes: list[str], info: dict, report: dict) -> None:
    """The face store's routes in a register, list, recognize, delete, list sequence (each dialect)."""
    for prefix, deepstack in FACE_FLOWS.items():
        if f"{prefix}/register" not in routes:
            continue
        for route, body, check in _face_flow(prefix, deepstack):
            status, headers, answer = request(f"{base}/v1/{route}", body)
            report["routes"][f"/v1/{route}"] = status
            problem = f"status {status}: {str(answer)[:300]}" if status != 200 else check(answer)  # type: ignore[operator]
            if problem:
                report["problems"].append(f"POST /v1/{route}: {problem}")


def probe_routes(base: str, report: dict) -> None:
    """Call every route of the server at ``base`` (http://host:port); fills ``report`` (routes,
    problems, info, served_routes). Also used for the container image (tests/deploy/test_image.py)."""
    for path in ("/health/live", "/health/ready", "/v1/models", "/info"):
        status, headers, body = request(base + path)
        report["routes"][path] = status
        if status != 200:
            report["problems"].append(f"GET {path} -> {status}")
    _probe_pages(base, report)
    _check_pages(base, report)
    _, _, info = request(base + "/info")
    report["info"] = {k: info.get(k) for k in ("device", "cuda_available", "torch_version", "artifacts")}
    _, _, listed = request(base + "/v1/models")
    routes = sorted({r for m in listed["models"] for r in m["routes"]})
    report["served_routes"] = routes
    _probe_faces(base, routes, info, report)
    for route in routes:
        if any(route.startswith(f"{prefix}/") for prefix in FACE_FLOWS):
            continue
        if route not in SAMPLES:
            report["problems"].append(f"route {route}: no sample request in tests/bundle_probe.py SAMPLES")
            continue
        body, check = SAMPLES[route]
        body = body() if callable(body) else body
        status, headers, answer = request(f"{base}/v1/{route}", body)
        report["routes"][f"/v1/{route}"] = status
        problem = f"status {status}: {answer}" if status != 200 else check(answer)
        if headers.get("X-Edge-Device") != info["device"]:
            problem = problem or f"X-Edge-Device {headers.get('X-Edge-Device')!r}"
        if problem:
            report["problems"].append(f"POST /v1/{route}: {problem}")
    _probe_v2_infer(base, listed["models"], report)
    # A route with no model behind it answers 404 with the one error body (the error path works frozen).
    status, _, answer = request(base + "/v1/token-classification", {"inputs": "x"})
    report["routes"]["/v1/token-classification (unserved)"] = status
    if "token-classification" not in routes and (status != 404 or "error" not in answer):
        report["problems"].append(f"unserved route answered {status} {answer}")


def probe(exe: Path, config: Path | None, strace_log: Path | None, chroot: Path | None = None) -> dict:
    """``chroot``: run ``exe`` (a path inside that root) there with ``chroot``; the network is shared."""
    cmd = ["chroot", str(chroot), str(exe)] if chroot else [str(exe)]
    if strace_log is not None:
        cmd = ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(strace_log), *cmd]
    config = config or exe.parent / "settings.toml"
    report: dict = {"routes": {}, "problems": []}
    t0 = time.monotonic()
    with running_server(config, cmd=cmd, ready_timeout=300) as base:
        report["ready_s"] = round(time.monotonic() - t0, 2)
        probe_routes(base, report)
    if strace_log is not None:
        add_peers(report, strace_log)
    return report


def add_peers(report: dict, strace_log: Path) -> None:
    """``report``'s peers (every address the traced process tried), connects, and outbound ones (a problem)."""
    seen = peers(strace_log)
    report["peers"] = sorted(set(seen))
    report["connects"] = len(seen)
    report["outbound"] = sorted({p for p in seen if not is_loopback(p)})
    if report["outbound"]:
        report["problems"].append(f"outbound connection attempts: {report['outbound']}")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("exe", type=Path)
    p.add_argument("--config", type=Path)
    p.add_argument("--strace", type=Path)
    p.add_argument("--chroot", type=Path, help="a root filesystem; EXE is a path inside it")
    args = p.parse_args()
    report = probe(args.exe, args.config, args.strace, args.chroot)
    print(json.dumps(report))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
