"""A small closed-loop HTTP load generator: N client threads, each sending the next request
as soon as the previous one returns, for a fixed time. Loopback only."""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    def summary(self) -> dict[str, float]:
        lat = sorted(self.latencies_ms) or [float("nan")]

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))]

        return {
            "concurrency": self.concurrency,
            "requests": len(self.latencies_ms),
            "ok": self.ok,
            "rps": round(self.ok / self.seconds, 2),
            "p50_ms": round(pct(50), 2),
            "p95_ms": round(pct(95), 2),
            "p99_ms": round(pct(99), 2),
            "mean_ms": round(statistics.fmean(lat), 2),
            "errors": sum(v for k, v in self.statuses.items() if k != 200),
        }


def post_json(base: str, path: str, body: object, timeout: float = 60) -> tuple[int, bytes]:
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def run_load(
    base: str, path: str, make_body: Callable[[int], object], concurrency: int, seconds: float, warmup_s: float = 2.0
) -> LoadResult:
    """Closed loop for ``warmup_s + seconds``; only requests started after warm-up are recorded."""
    result = LoadResult(concurrency, seconds)
    lock = threading.Lock()
    start = time.monotonic()
    t_record, t_end = start + warmup_s, start + warmup_s + seconds

    def worker(wid: int) -> None:
        i = 0
        while True:
            t0 = time.monotonic()
            if t0 >= t_end:
                return
            try:
                status, _ = post_json(base, path, make_body(wid * 100000 + i))
            except OSError:
                status = 0
            t1 = time.monotonic()
            i += 1
            if t0 >= t_record and t1 <= t_end:
                with lock:
                    result.latencies_ms.append((t1 - t0) * 1000)
                    result.statuses[status] = result.statuses.get(status, 0) + 1

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return result
