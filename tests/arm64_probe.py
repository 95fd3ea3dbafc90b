"""Start a bundle's executable, call every route (tests/bundle_probe.py), and also record each /v1
sample's answer and the server's memory, as one JSON line on stdout: the arm64 bundle under
qemu-user in its Python-free root (scripts/arm64_check.sh runs this in a loopback-only network
namespace) and the x86-64 lite bundle natively, so tests/test_bundle_arm64.py can compare answers.

    python -m tests.arm64_probe EXE [--chroot ROOT] [--strace LOG]
    python -m tests.arm64_probe --url http://127.0.0.1:8080 [--pid PID]   # a server already started

``--url``: a server started elsewhere (the arm64 image under podman, tests/deploy/test_image_arm64.py runs
this in the container's network namespace): wait until it is ready, call every route, read PID's memory.

``answers``: route -> {status, answer, s (seconds)} of every POST /v1/<route> the probe made (the last, for a route
called twice).

``rss_kb`` / ``hwm_kb``: VmRSS / VmHWM of the served process after the routes. Under emulation that
process is qemu-aarch64 running the bundle, so the figure includes the emulator and its translated
code; ``ready_s`` likewise says nothing about an Arm board's start-up.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import bundle_probe
from tests.serving import processes_with, request, running_server

READY_TIMEOUT_S = 900  # start-up under emulation: every model loaded and its start-up check run, all translated
REQUEST_TIMEOUT_S = 600  # one request under emulation (bundle_probe's own 60 s is for native speed)

# The fidelity gates: an emulated arm64 answer against the x86-64 lite bundle's (assert_equivalent).
MIN_COSINE = 0.999  # embeddings (text and image)
BOX_PX = 1.0  # boxes, landmarks, polygons and DeepStack coordinates
# Other numbers (scores, similarities, distances). The int8 graphs run other kernels on Arm (dot product)
# than on x86 (VNNI); EfficientNet-Lite0's own build gate allows 0.2 of probability against fp32.
SCORE_ATOL = 0.05
TIE_BELOW = 0.05  # ranked labels scoring under this may trade places with near-ties (within SCORE_ATOL)
# Where the two CPUs serve a model in different int8 forms (an x86 CPU without VNNI serves the 7-bit forms,
# Arm the 8-bit ones), each form was gated against fp32 on its own CPU, so the answers are held to the
# gates instead: MiniLM's min cosine 0.98, EfficientNet-Lite0's max prob diff 0.2.
ACROSS_FORMS = {"min_cosine": 0.98, "score_atol": 0.2}
IGNORED = {"inference_ms", "duration_ms", "timings", "inferenceMs", "processMs"}
PIXELS = {"box", "landmarks", "x_min", "y_min", "x_max", "y_max"}


def _memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (kB) of a live process; empty when it is gone."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    except OSError:
        return {}
    return {"rss_kb": fields.get("VmRSS", 0), "hwm_kb": fields.get("VmHWM", 0)}


def server_memory(exe: Path) -> dict[str, int]:
    """The memory of the largest process running ``exe`` (wrappers such as strace and chroot are small)."""
    found = [_memory(pid) for pid in processes_with(str(exe))]
    return max((m for m in found if m), key=lambda m: m["rss_kb"], default={})


def recording(answers: dict[str, object], timeout: float) -> Callable[..., tuple]:
    """tests.serving.request with ``timeout``, keeping each POST /v1/<route> answer (the last per route) in
    ``answers``: bundle_probe's own calls are recorded, so the emulated server answers each sample once."""

    def request_(url: str, body: object | None = None, headers: dict[str, str] | None = None, **_: object) -> tuple:
        t0 = time.monotonic()
        status, got_headers, answer = request(url, body, headers, timeout=timeout)
        if body is not None and "/v1/" in url:
            answers[url.split("/v1/", 1)[1]] = {
                "status": status,
                "answer": answer,
                "s": round(time.monotonic() - t0, 1),
            }
        return status, got_headers, answer

    return request_


def _probe_recorded(base: str, report: dict) -> None:
    """bundle_probe's probe of ``base``, each /v1 answer recorded in ``report["answers"]``, and the time it took."""
    report["answers"] = {}
    native = bundle_probe.request
    bundle_probe.request = recording(report["answers"], REQUEST_TIMEOUT_S)
    try:
        t0 = time.monotonic()
        bundle_probe.probe_routes(base, report)
        report["routes_s"] = round(time.monotonic() - t0, 1)
    finally:
        bundle_probe.request = native  # this module may run inside a test session (the x86 side)
    _, _, info = request(base + "/info", timeout=REQUEST_TIMEOUT_S)
    report["forms"] = {name: m.get("variant") for name, m in info.get("models", {}).items()}


def probe(exe: Path, chroot: Path | None, strace_log: Path | None) -> dict:
    cmd = ["chroot", str(chroot), str(exe)] if chroot else [str(exe)]
    if strace_log is not None:
        cmd = ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(strace_log), *cmd]
    report: dict = {"routes": {}, "problems": [], "chroot": str(chroot) if chroot else None}
    t0 = time.monotonic()
    with running_server(exe.parent / "settings.toml", cmd=cmd, ready_timeout=READY_TIMEOUT_S) as base:
        report["ready_s"] = round(time.monotonic() - t0, 1)
        _probe_recorded(base, report)
        report.update(server_memory(exe))
    if strace_log is not None:
        bundle_probe.add_peers(report, strace_log)
    return report


def probe_url(base: str, pid: int | None = None, started: float | None = None) -> dict:
    """The probe of a server started elsewhere at ``base``: waits (READY_TIMEOUT_S) until /health/ready answers
    200; ``ready_s`` counts from ``started`` (a time.time()), else from now; memory is ``pid``'s."""
    report: dict = {"routes": {}, "problems": []}
    t0 = time.time() if started is None else started
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            if request(base + "/health/ready", timeout=5)[0] == 200:
                break
        except (OSError, ValueError):  # not listening yet
            pass
        if time.monotonic() > deadline or (pid is not None and not Path(f"/proc/{pid}").exists()):
            report["problems"].append(f"{base} not ready after {time.time() - t0:.0f} s")
            return report
        time.sleep(0.5)
    report["ready_s"] = round(time.time() - t0, 1)
    _probe_recorded(base, report)
    if pid is not None:
        report.update(_memory(pid))
    return report


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def _near_tie(got: object, want: object) -> bool:
    """Two ranked labels at the same rank, both scoring under TIE_BELOW: their order is int8 rounding."""
    scores = [x.get("score") if isinstance(x, dict) and "label" in x else None for x in (got, want)]
    return all(isinstance(v, float) and v < TIE_BELOW for v in scores)


def assert_equivalent(
    got: object,
    want: object,
    where: str,
    pixels: bool = False,
    min_cosine: float = MIN_COSINE,
    score_atol: float = SCORE_ATOL,
) -> None:
    """Equal structure and strings; embeddings by cosine (``min_cosine``), pixel positions (anything under a
    PIXELS key) within BOX_PX, other numbers within ``score_atol``."""
    key = where.rsplit(".", 1)[-1].split("[")[0]
    pixels = pixels or key in PIXELS
    tol = {"min_cosine": min_cosine, "score_atol": score_atol}
    if isinstance(want, dict):
        assert isinstance(got, dict), where
        assert set(got) == set(want), where
        for k in sorted(set(want) - IGNORED):
            assert_equivalent(got[k], want[k], f"{where}.{k}", pixels, **tol)
    elif key == "embedding":
        assert isinstance(got, list), where
        assert _cosine(got, want) >= min_cosine, f"{where}: cosine {_cosine(got, want):.5f}"
    elif isinstance(want, list):
        assert isinstance(got, list), where
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            if _near_tie(g, w):
                assert g["score"] == pytest.approx(w["score"], abs=score_atol), f"{where}[{i}]"
                continue
            assert_equivalent(g, w, f"{where}[{i}]", pixels, **tol)
    elif isinstance(want, int | float) and not isinstance(want, bool):
        assert got == pytest.approx(want, abs=BOX_PX if pixels else score_atol), where
    else:
        assert got == want, where


def assert_same_answers(arm: dict, x86: dict) -> None:
    """Every route the x86 probe answered was answered on arm64 with the same status and an equivalent answer:
    to the digits int8 rounding allows where both serve every model in the same form, to the build gates
    (ACROSS_FORMS) where a model serves in another form on one of them (which one, /info says)."""
    assert arm["served_routes"] == x86["served_routes"]
    assert set(arm["answers"]) == set(x86["answers"])
    assert set(arm["forms"]) == set(x86["forms"])
    tol = ACROSS_FORMS if arm["forms"] != x86["forms"] else {}
    for route, want in x86["answers"].items():
        got = arm["answers"][route]
        assert got["status"] == want["status"], (route, got)
        assert_equivalent(got["answer"], want["answer"], route, **tol)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("exe", type=Path, nargs="?")
    p.add_argument("--chroot", type=Path, help="a root filesystem; EXE is a path inside it")
    p.add_argument("--strace", type=Path)
    p.add_argument("--url", help="instead of EXE: a server already started, e.g. http://127.0.0.1:8080")
    p.add_argument("--pid", type=int, help="with --url: the server's process (its memory)")
    p.add_argument("--started", type=float, help="with --url: when it was started (time.time())")
    args = p.parse_args()
    if (args.url is None) == (args.exe is None):
        p.error("EXE or --url")
    report = probe_url(args.url, args.pid, args.started) if args.url else probe(args.exe, args.chroot, args.strace)
    print(json.dumps(report))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
