"""Where one /v1/embeddings request spends its time, stage by stage, through the real waitress server.

    python -m bench.profile_request                       # 400 sequential requests, this checkout
    python -m bench.profile_request --rev HEAD~3 --env EDGE_MM_RUNTIME_INTRA_OP_THREADS=2 --requests 400

Each variant (this checkout, ``--rev R``: the edge_mm package as of git revision R, ``--env K=V``:
this checkout with that setting, ``--tree DIR``: the edge_mm package in DIR) runs in its own process, one after another, and the runs are
repeated ``--rounds`` times in turn, so a before/after pair is measured side by side. In each:
the server is built in process (registry, create_app, waitress with the settings' limits),
perf_counter timers are wrapped around the stages, and one client on a keep-alive socket sends
sequential requests (one 32-token sentence each, 256 different in turn).

Stages: HTTP (waitress parse/write, thread hops, the client's own socket calls) = client round trip
minus time inside the WSGI app; auth; JSON decode (read_payload); validation (pydantic); tokenize;
admission (waiting for a slot); batcher hand-off (submit minus the forward it waited for);
forward (forward_now in the batcher's worker: padding, TorchScript, splitting); post-processing
(rounding, lists); JSON encode (jsonify); Flask (routing, hooks, metrics, headers) = the rest.
Writes bench/results/request_profile.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.machine import machine, machine_line
from bench.servers import edge_mm_tree

ROOT = Path(__file__).resolve().parents[1]
STAGES = [
    "HTTP (waitress, client socket)",
    "auth",
    "JSON decode",
    "validation",
    "tokenize",
    "admission",
    "batcher hand-off",
    "forward",
    "post-processing",
    "JSON encode",
    "Flask (routing, hooks, metrics)",
]

_t: dict[str, list[float]] = defaultdict(list)  # stage -> ms per request (sequential: one request at a time)


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _t[name].append((time.perf_counter() - t0) * 1000)

    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


def _instrument() -> None:
    """Wrap the stages' functions where they are looked up at call time; tolerant of older revisions."""
    import edge_mm.api as api
    import edge_mm.api.routes as routes
    import edge_mm.tasks.embeddings as embeddings
    from edge_mm.runtime.admission import Admission
    from edge_mm.runtime.batcher import Batcher
    from edge_mm.runtime.text_model import TextModel
    from edge_mm.runtime.text_tokenizer import TextTokenizer

    api.require_key = _timed("auth", api.require_key)  # type: ignore[attr-defined]
    routes.read_payload = _timed("JSON decode", routes.read_payload)  # type: ignore[attr-defined]
    routes.jsonify = _timed("JSON encode", routes.jsonify)  # type: ignore[attr-defined]
    embeddings.validate = _timed("validation", embeddings.validate)  # type: ignore[attr-defined]
    embeddings.embed = _timed("embed", embeddings.embed)
    TextTokenizer.encode = _timed("tokenize", TextTokenizer.encode)  # type: ignore[method-assign]
    Batcher.submit = _timed("submit", Batcher.submit)  # type: ignore[method-assign]
    TextModel.forward_now = _timed("forward", TextModel.forward_now)  # type: ignore[method-assign]
    slot = Admission.slot

    @contextmanager
    def timed_slot(self: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        with slot(self, *args, **kwargs) as deadline:
            _t["admission"].append((time.perf_counter() - t0) * 1000)
            yield deadline

    Admission.slot = timed_slot  # type: ignore[method-assign]


def _serve(config: Path) -> tuple[Any, int, Any]:
    from edge_mm.api import create_app
    from edge_mm.config import load_settings
    from edge_mm.runtime.registry import load_registry
    from edge_mm.serving.waitress_server import create_server
    from edge_mm.tasks.table import LOADERS, OPTIONS

    settings = load_settings(config, env={**os.environ, "EDGE_MM_SERVER_HOST": "127.0.0.1", "EDGE_MM_SERVER_PORT": "0"})
    registry = load_registry(settings, LOADERS, options=OPTIONS)
    registry.warm_all()
    app = create_app(settings, registry)
    inner = app.wsgi_app
    app.wsgi_app = _timed("wsgi", inner)  # type: ignore[method-assign]
    srv = create_server(app, settings)
    threading.Thread(target=srv.run, name="waitress", daemon=True).start()
    return srv, srv.effective_port, registry


def _request_bytes(port: int, text: str) -> bytes:
    body = json.dumps({"inputs": text}).encode()
    head = (
        f"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _roundtrip(sock: socket.socket, request: bytes) -> int:
    """Send one request, read one response (Content-Length framed); returns the status."""
    sock.sendall(request)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = next(int(ln.split(b":")[1]) for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split(b" ", 2)[1])


def breakdown(t: dict[str, list[float]], n: int) -> dict[str, float]:
    """Per-request stage times (ms, means over the last ``n`` requests) from the raw timers.

    Derived stages: HTTP = round trip - wsgi; hand-off = submit - forward; post-processing =
    embed - tokenize - submit; Flask = wsgi - the stages inside it.
    """

    def mean(key: str) -> float:
        values = t.get(key, [])[-n:]
        return statistics.fmean(values) if values else 0.0

    out = {
        "HTTP (waitress, client socket)": mean("roundtrip") - mean("wsgi"),
        "auth": mean("auth"),
        "JSON decode": mean("JSON decode"),
        "validation": mean("validation"),
        "tokenize": mean("tokenize"),
        "admission": mean("admission"),
        "batcher hand-off": max(0.0, mean("submit") - mean("forward")) if t.get("submit") else 0.0,
        "forward": mean("forward"),
        "post-processing": mean("embed") - mean("tokenize") - (mean("submit") or mean("forward")),
        "JSON encode": mean("JSON encode"),
    }
    inside = sum(v for k, v in out.items() if k != "HTTP (waitress, client socket)")
    out["Flask (routing, hooks, metrics)"] = mean("wsgi") - inside
    out["total (client round trip)"] = mean("roundtrip")
    out["p50 round trip"] = statistics.median(t["roundtrip"][-n:])
    return {k: round(v, 4) for k, v in out.items()}


def child(config: Path, requests: int, warmup: int, texts: list[str]) -> dict[str, Any]:
    """One variant, in this process: serve, time ``requests`` sequential requests, return the breakdown."""
    _instrument()
    srv, port, registry = _serve(config)
    payloads = [_request_bytes(port, t) for t in texts]
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(warmup + requests):
            t0 = time.perf_counter()
            status = _roundtrip(sock, payloads[i % len(payloads)])
            _t["roundtrip"].append((time.perf_counter() - t0) * 1000)
            if status != 200:
                raise RuntimeError(f"request {i} answered {status}")
    srv.close()
    return {"breakdown": breakdown(_t, requests), "threads": registry.info.get("threads")}


def run_variant(name: str, config: Path, requests: int, warmup: int, texts_file: Path) -> dict[str, Any]:
    env, cwd = dict(os.environ), ROOT
    if name.startswith("tree:"):  # a folder holding an edge_mm package (e.g. this checkout with a fix undone)
        cwd = Path(name[5:]).resolve()
        env["PYTHONPATH"] = str(ROOT)
    elif name.startswith("rev:"):  # python -m puts the working directory first on sys.path: the old tree's
        cwd = edge_mm_tree(name[4:])
        env["PYTHONPATH"] = str(ROOT)  # ... edge_mm, this checkout's bench
    elif name.startswith("env:"):
        key, _, value = name[4:].partition("=")
        env[key] = value
    argv = [sys.executable, "-m", "bench.profile_request", "--child", "--config", str(config)]
    argv += ["--requests", str(requests), "--warmup", str(warmup), "--texts", str(texts_file)]
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"variant {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def render(result: dict[str, Any]) -> str:
    names = list(result["variants"])
    first = names[0]
    lines = [
        f"Command: `{result['command']}`",
        "",
        f"Run {result['when']} on {result['cores']} cores; {result['requests']} sequential requests per variant and "
        f"round ({result['warmup']} more before them, not counted), one keep-alive client, one 32-token sentence each; "
        f"{result['rounds']} rounds, variants in turn; figures are the mean over the rounds of each round's mean (ms). "
        f"Load average before/after: {result['load_before']} / {result['load_after']}.",
        machine_line(result.get("machine")),
        "**This run was on a busy shared machine** (other jobs used the same 2 cores): compare variants within "
        "the run, not absolute figures.",
        "",
        "| stage | " + " | ".join(names) + f" | share ({first}) |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    rows = [*STAGES, "total (client round trip)", "p50 round trip"]
    total = result["variants"][first]["total (client round trip)"]
    for stage in rows:
        values = [result["variants"][n].get(stage, 0.0) for n in names]
        share = f"{100 * values[0] / total:.0f}%" if stage in STAGES and total else ""
        bold = "**" if stage.startswith(("total", "p50")) else ""
        lines.append(f"| {bold}{stage}{bold} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {share} |")
    lines += ["", "Threads per variant (from /info): " + "; ".join(f"{n}: {result['threads'][n]}" for n in names)]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "bench" / "minilm_settings.toml")
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--rev", action="append", default=[], help="also profile the edge_mm package as of this revision")
    p.add_argument("--env", action="append", default=[], help="also profile this checkout with K=V set")
    p.add_argument("--tree", action="append", default=[], help="also profile the edge_mm package in this folder")
    p.add_argument("--no-current", action="store_true", help="leave out this checkout as it is")
    p.add_argument("--out", default="request_profile")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        texts = json.loads(a.texts.read_text())
        print(json.dumps(child(a.config, a.requests, a.warmup, texts)), flush=True)
        os._exit(0)  # batcher workers are daemon threads inside torch; skip interpreter teardown
    from bench.payloads import sentences_of_32_tokens

    variants = ([] if a.no_current else ["this checkout"]) + [f"rev:{r}" for r in a.rev] + [f"tree:{t}" for t in a.tree]
    variants += [f"env:{e}" for e in a.env]
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    per: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(sentences_of_32_tokens(), f)
    try:
        for k in range(a.rounds):
            for v in variants if k % 2 == 0 else variants[::-1]:
                r = run_variant(v, a.config, a.requests, a.warmup, Path(f.name))
                print(json.dumps({"variant": v, "round": k, **r}), flush=True)
                per[v].append(r)
    finally:
        os.unlink(f.name)
    result = {
        "command": "python -m bench.profile_request " + " ".join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "cores": os.cpu_count(),
        "machine": machine(),
        "requests": a.requests,
        "warmup": a.warmup,
        "rounds": a.rounds,
        "load_before": load_before,
        "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "variants": {
            v: {k: round(statistics.fmean(r["breakdown"][k] for r in runs), 4) for k in runs[0]["breakdown"]}
            for v, runs in per.items()
        },
        "threads": {v: runs[0]["threads"] for v, runs in per.items()},
    }
    md = render(result)
    print(md)
    out = ROOT / "bench" / "results"
    (out / f"{a.out}.json").write_text(json.dumps(result, indent=2))
    (out / f"{a.out}.md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
