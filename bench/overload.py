"""An overload burst, as a user would hit it: far more clients than the server can answer in time.

    python -m bench.overload                       # settings.toml, 400 connections, 40 s
    python -m bench.overload --connections 400 --seconds 40 --sentences 64 --label after

Starts ``edge-mm serve`` (waitress, the settings given) on 127.0.0.1 and, at the same time:

- wrk (one thread) keeps ``--connections`` connections POSTing ``--sentences``-sentence
  ``/v1/embeddings`` requests back to back (closed loop), counting answers by status;
- four Python clients send the same request in a loop and time each answer, so the latency of
  the 200s and of the 503s is known separately (wrk only times them together); unlike wrk they
  wait the 1 s ``Retry-After`` asks for after a 503 (wrk's connections resend at once, and the
  server leaves such a connection unread for 0.25 s, which its latency figures include);
- a prober GETs ``/health/ready`` every 100 ms during the burst and for ``--after`` seconds after
  it (when wrk's connections have gone: the server must not keep computing their requests);
- RSS is sampled every 0.5 s.

Writes ``bench/results/overload-<label>.json`` and prints one Markdown row; the machine is in
the JSON (bench/machine.py). ``--cwd`` serves another checkout (e.g. a worktree of an older
commit) for a before/after comparison on the same machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.load import post_raw, run_wrk
from bench.machine import machine, machine_line
from bench.servers import ROOT, free_port, rss_mb, server

SENTENCE = "The quick brown fox jumps over the lazy dog near the riverbank at dawn, number {}."


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))], 1)


def timed_clients(base: str, body: bytes, stop: threading.Event, n: int = 4) -> list[tuple[int, float]]:
    """(status, ms) of every answer the ``n`` timed clients got."""
    samples: list[tuple[int, float]] = []
    lock = threading.Lock()

    def client() -> None:
        conn = None
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                status, conn = post_raw(base, "/v1/embeddings", body, "application/json", conn)
            except OSError:
                status, conn = 0, None
            with lock:
                samples.append((status, (time.perf_counter() - t0) * 1000))
            if status == 503:
                time.sleep(1.0)  # as Retry-After says: these are the well-behaved clients

    threads = [threading.Thread(target=client, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join(timeout=65)
    return samples


def probe_health(base: str, stop: threading.Event, phase: list[str]) -> list[tuple[str, int, float]]:
    """(phase, status, ms) of GET /health/ready every 100 ms until ``stop``."""
    out = []
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(base + "/health/ready", timeout=30) as r:
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        except OSError:
            status = 0
        out.append((phase[0], status, (time.perf_counter() - t0) * 1000))
        time.sleep(0.1)
    return out


def burst(base: str, pid: int, connections: int, seconds: int, sentences: int, after_s: float) -> dict:
    body = json.dumps({"inputs": [SENTENCE.format(i) for i in range(sentences)]}).encode()
    phase = ["burst"]
    stop_health, stop_clients = threading.Event(), threading.Event()
    rss: list[float] = []
    health: list = []
    clients: list = []
    probes = [
        threading.Thread(target=lambda: health.extend(probe_health(base, stop_health, phase))),
        threading.Thread(target=lambda: clients.extend(timed_clients(base, body, stop_clients))),
    ]
    for t in probes:
        t.start()

    def sample_rss() -> None:
        while not stop_health.is_set():
            rss.append(rss_mb(pid))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    rss_before = rss_mb(pid)
    wrk = run_wrk(base, "/v1/embeddings", [body], "application/json", connections - 4, seconds, 60, True)
    by = wrk["statuses"]
    stop_clients.set()
    phase[0] = "after"
    time.sleep(after_s)
    stop_health.set()
    for t in probes:
        t.join(timeout=70)
    ok = [ms for s, ms in clients if s == 200]
    shed = [ms for s, ms in clients if s in (503, 429)]
    during = [ms for p, _, ms in health if p == "burst"]
    after = [ms for p, _, ms in health if p == "after"]
    return {
        "wrk": wrk,
        "served": by.get("200", 0),
        "shed": by.get("503", 0) + by.get("429", 0),
        "timed_out_504": by.get("504", 0),
        "timed_clients": {
            "answers": len(clients),
            "statuses": {str(s): sum(1 for x, _ in clients if x == s) for s in sorted({x for x, _ in clients})},
            "ok_p50_ms": pct(ok, 50),
            "ok_p99_ms": pct(ok, 99),
            "ok_max_ms": round(max(ok), 1) if ok else None,
            "shed_p50_ms": pct(shed, 50),
            "shed_p99_ms": pct(shed, 99),
        },
        "health": {
            "during_p50_ms": pct(during, 50),
            "during_p99_ms": pct(during, 99),
            "during_max_ms": round(max(during), 1) if during else None,
            "after_max_ms": round(max(after), 1) if after else None,
            "after_first_ms": round(after[0], 1) if after else None,
            "not_200": sum(1 for _, s, _ in health if s != 200),
            "probes": len(health),
        },
        "rss_mb": {"before": round(rss_before, 1), "max": round(max(rss), 1), "after": round(rss_mb(pid), 1)},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "settings.toml")
    p.add_argument("--connections", type=int, default=400)
    p.add_argument("--seconds", type=int, default=40)
    p.add_argument("--sentences", type=int, default=64)
    p.add_argument("--after", type=float, default=15.0, help="seconds of health probes after the burst")
    p.add_argument("--cwd", type=Path, default=ROOT, help="the checkout to serve (default: this one)")
    p.add_argument("--label", default="current")
    a = p.parse_args()
    port = free_port()
    env = {
        "EDGE_MM_SERVER_PORT": str(port),
        "EDGE_MM_SERVER_HOST": "127.0.0.1",
        "EDGE_MM_RUNTIME_ARTIFACTS_DIR": str(ROOT / "build" / "artifacts"),
    }
    argv = [sys.executable, "-m", "edge_mm", "--config", str(a.config.resolve()), "--log-level", "WARNING", "serve"]
    with server(argv, port, env=env, cwd=a.cwd) as (base, pid):
        time.sleep(2)
        figures = burst(base, pid, a.connections, a.seconds, a.sentences, a.after)
    result = {
        "command": "python -m bench.overload " + " ".join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "label": a.label,
        "connections": a.connections,
        "seconds": a.seconds,
        "sentences": a.sentences,
        **figures,
    }
    out = RESULTS / f"overload-{a.label}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(render())
    print(f"wrote {out.relative_to(ROOT)} and overload.md")


RESULTS = ROOT / "bench" / "results"


def row(r: dict) -> str:
    h, c = r["health"], r["timed_clients"]
    return (
        f"| {r['label']} | {r['served']} | {r['shed']} | {r['timed_out_504']} | "
        f"{c['ok_p50_ms']} / {c['ok_p99_ms']} | {c['shed_p50_ms']} / {c['shed_p99_ms']} | "
        f"{h['during_p50_ms']} / {h['during_p99_ms']} / {h['during_max_ms']} | "
        f"{h['after_first_ms']} / {h['after_max_ms']} | {r['rss_mb']['before']} / {r['rss_mb']['max']} |"
    )


def render() -> str:
    """bench/results/overload.md from every overload-*.json there (one row per label)."""
    runs = [json.loads(p.read_text()) for p in RESULTS.glob("overload-*.json")]
    runs.sort(key=lambda r: (r["label"] != "before", r["when"]))
    first = runs[0]
    text = "\n".join(
        [
            "# Overload burst",
            "",
            f"`python -m bench.overload`: {first['connections']} connections (wrk, closed loop, no "
            f"back-off) POSTing {first['sentences']}-sentence /v1/embeddings requests for {first['seconds']} s to "
            "`edge-mm serve` with settings.toml (5 models, waitress, 16 threads); 4 timed clients among them; "
            "GET /health/ready every 100 ms during the burst and 15 s after it.",
            "",
            machine_line(first["machine"]),
            "",
            "| run | 200s | 503s | 504s | 200 latency p50 / p99 (ms) | 503 latency p50 / p99 (ms) | "
            "health during p50 / p99 / max (ms) | health after: first / max (ms) | RSS before / max (MB) |",
            "|---|---|---|---|---|---|---|---|---|",
            *(row(r) for r in runs),
            "",
            *(f"- {r['label']}: `{r['command']}`, {r['when']}" for r in runs),
            "",
        ]
    )
    (RESULTS / "overload.md").write_text(text)
    return text


if __name__ == "__main__":
    main()
