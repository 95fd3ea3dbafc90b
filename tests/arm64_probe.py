"""Start a bundle's executable, call every route (tests/bundle_probe.py), and also record each /v1
sample's answer and the server's memory, as one JSON line on stdout: the arm64 bundle under
qemu-user in its Python-free root (scripts/arm64_check.sh runs this in a loopback-only network
namespace) and the x86-64 lite bundle natively, so tests/test_bundle_arm64.py can compare answers.

    python -m tests.arm64_probe EXE [--chroot ROOT] [--strace LOG]

``answers``: route -> {status, answer, s (seconds)} of every POST /v1/<route> the probe made (the last, for a route
called twice).

``rss_kb`` / ``hwm_kb``: VmRSS / VmHWM of the served process after the routes. Under emulation that
process is qemu-aarch64 running the bundle, so the figure includes the emulator and its translated
code; ``ready_s`` likewise says nothing about an Arm board's start-up.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests import bundle_probe
from tests.serving import processes_with, request, running_server

READY_TIMEOUT_S = 900  # start-up under emulation: every model loaded and its start-up check run, all translated
REQUEST_TIMEOUT_S = 600  # one request under emulation (bundle_probe's own 60 s is for native speed)


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


def probe(exe: Path, chroot: Path | None, strace_log: Path | None) -> dict:
    cmd = ["chroot", str(chroot), str(exe)] if chroot else [str(exe)]
    if strace_log is not None:
        cmd = ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(strace_log), *cmd]
    report: dict = {"routes": {}, "problems": [], "chroot": str(chroot) if chroot else None}
    t0 = time.monotonic()
    report["answers"] = {}
    native = bundle_probe.request
    bundle_probe.request = recording(report["answers"], REQUEST_TIMEOUT_S)
    try:
        with running_server(exe.parent / "settings.toml", cmd=cmd, ready_timeout=READY_TIMEOUT_S) as base:
            report["ready_s"] = round(time.monotonic() - t0, 1)
            t0 = time.monotonic()
            bundle_probe.probe_routes(base, report)
            report["routes_s"] = round(time.monotonic() - t0, 1)
            report.update(server_memory(exe))
    finally:
        bundle_probe.request = native  # this module may run inside a test session (the x86 side)
    if strace_log is not None:
        bundle_probe.add_peers(report, strace_log)
    return report


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("exe", type=Path)
    p.add_argument("--chroot", type=Path, help="a root filesystem; EXE is a path inside it")
    p.add_argument("--strace", type=Path)
    args = p.parse_args()
    report = probe(args.exe, args.chroot, args.strace)
    print(json.dumps(report))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
