"""Slow-client flood (slowloris) against a real `edge-mm serve` on 127.0.0.1.

N connections each send a request line, then one header line every ``--interval`` seconds and
never finish their headers; a connection the server closes is reopened at once, as an attacker
would. Meanwhile a normal GET /health/live and an embeddings request are timed once a second,
each on a fresh connection. Figures go to bench/results/slow_clients.json under ``--label``.

    python -m bench.slow_clients --label after
    python -m bench.slow_clients --label over-limit --env EDGE_MM_SERVER_CONNECTION_LIMIT=100
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import statistics
import threading
import time
from pathlib import Path

from bench.machine import machine
from bench.servers import ROOT, cpu_seconds, edge_mm_argv, free_port, server

RESULTS = ROOT / "bench" / "results" / "slow_clients.json"
TINY = ROOT / "build" / "work" / "bench-tiny"


def tiny_config() -> Path:
    """A settings.toml serving one tiny random embeddings model, built once into build/work/bench-tiny."""
    config = TINY / "settings.toml"
    if (TINY / "artifacts" / "manifest.json").is_file():
        return config
    from edge_mm.build.all_models import build_all
    from edge_mm.config import load_settings
    from tests.tiny_models import make_checkpoint

    make_checkpoint(TINY / "ckpt", "bert-embeddings")
    config.write_text(
        f'[runtime]\nartifacts_dir = "{TINY / "artifacts"}"\n\n'
        f'[[models]]\nname = "tiny-embed"\ntask = "embeddings"\nsource = "{TINY / "ckpt"}"\nmax_length = 32\n'
    )
    build_all(load_settings(config, env={}), out=io.StringIO())
    return config


class SlowFlood:
    """``n`` slowloris connections kept open (reopened when closed) by one thread."""

    def __init__(self, port: int, n: int, interval: float) -> None:
        self.port, self.n, self.interval = port, n, interval
        self.socks: list[socket.socket | None] = [None] * n
        self.next_send = [0.0] * n
        self.opened = self.reopened = self.failed_connects = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, i: int) -> None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
            s.setblocking(False)
        except OSError:
            self.failed_connects += 1
            self.socks[i] = None
            return
        self.socks[i] = s
        self.next_send[i] = time.monotonic() + self.interval
        self.opened += 1

    def _closed_by_server(self, s: socket.socket) -> bool:
        try:
            return s.recv(4096) == b""  # EOF, or an error answer we ignore (the next recv sees EOF)
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _run(self) -> None:
        for i in range(self.n):
            self._open(i)
        k = 0
        while not self.stop.is_set():
            now = time.monotonic()
            for i, s in enumerate(self.socks):
                if s is None or self._closed_by_server(s):
                    if s is not None:
                        s.close()
                        self.reopened += 1
                    self._open(i)
                elif now >= self.next_send[i]:
                    try:
                        s.send(b"X-Slow-%d: %d\r\n" % (k, i))
                    except OSError:
                        s.close()
                        self.socks[i] = None
                    self.next_send[i] = now + self.interval
            k += 1
            self.stop.wait(0.2)
        for s in self.socks:
            if s is not None:
                s.close()

    def open_count(self) -> int:
        return sum(s is not None for s in self.socks)


def timed(port: int, method: str, path: str, body: bytes | None, timeout: float) -> tuple[float, int]:
    """(seconds, status); status 0 when no answer came within ``timeout``."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        status = response.status
    except OSError:
        status = 0
    finally:
        conn.close()
    return time.perf_counter() - t0, status


def summary(samples: list[tuple[float, int]]) -> dict[str, float | int]:
    ok = [t for t, status in samples if status == 200]
    return {
        "requests": len(samples),
        "answered_200": len(ok),
        "p50_s": round(statistics.median(ok), 4) if ok else None,
        "max_s": round(max(ok), 4) if ok else None,
        "within_1s": sum(t <= 1.0 for t in ok),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", default="after")
    p.add_argument("--connections", type=int, default=150)
    p.add_argument("--interval", type=float, default=5.0, help="seconds between header lines per connection")
    p.add_argument("--seconds", type=float, default=30.0, help="how long normal requests are timed")
    p.add_argument("--timeout", type=float, default=10.0, help="client timeout of a timed request (s)")
    p.add_argument("--config", type=Path, help="settings.toml (default: one tiny embeddings model)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="server environment")
    args = p.parse_args()
    config = args.config or tiny_config()
    port = free_port()
    env = {"EDGE_MM_SERVER_PORT": str(port), "EDGE_MM_SERVER_HOST": "127.0.0.1"}
    env.update(kv.split("=", 1) for kv in args.env)
    embed = json.dumps({"inputs": ["a normal request"]}).encode()
    with server(edge_mm_argv(config), port, env=env) as (_, pid):
        quiet = [timed(port, "GET", "/health/live", None, args.timeout) for _ in range(5)]
        cpu0 = cpu_seconds(pid)
        flood = SlowFlood(port, args.connections, args.interval)
        flood.thread.start()
        time.sleep(min(args.interval + 1, 6))  # every slow connection open and past its first header line
        live, infer, fds = [], [], []
        t_end = time.monotonic() + args.seconds
        while time.monotonic() < t_end:
            t0 = time.monotonic()
            live.append(timed(port, "GET", "/health/live", None, args.timeout))
            infer.append(timed(port, "POST", "/v1/embeddings", embed, args.timeout))
            fds.append(len(os.listdir(f"/proc/{pid}/fd")))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
        flood.stop.set()
        flood.thread.join(5)
        cpu = cpu_seconds(pid) - cpu0
    figures = {
        "connections": args.connections,
        "header_line_every_s": args.interval,
        "measured_s": args.seconds,
        "client_timeout_s": args.timeout,
        "server_env": dict(kv.split("=", 1) for kv in args.env),
        "quiet_live_max_s": round(max(t for t, _ in quiet), 4),
        "live": summary(live),
        "inference": summary(infer),
        "slow_connections_opened": flood.opened,
        "slow_connections_closed_by_server": flood.reopened,
        "slow_connect_failures": flood.failed_connects,
        "server_fds_max": max(fds),
        "server_cpu_s": round(cpu, 2),
        "machine": machine(),
    }
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results[args.label] = figures
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({args.label: figures}, indent=2))


if __name__ == "__main__":
    main()
