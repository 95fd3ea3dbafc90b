"""The door: how many inference requests may wait for a worker thread, judged when each arrives.

The HTTP server (edge_mm/serving/waitress_server.py) asks :meth:`Door.admit` the moment a
request has been read, before it joins the queue for a worker thread. A request is turned
away with 503 at once when

- ``max_waiting`` requests already wait for a thread (a hard bound on queued memory), or
- the time it would take to answer it, judged from the threads' measured pace, passes
  ``max_expected_s``: ``(waiting + 1) x mean service time / threads + mean service time``.

The mean service time is a moving average of how long a worker thread takes per inference
request (waiting for a model slot included), so the bound follows the models' real speed on
this machine and with this request mix: a queue of 64 short requests may be fine, a queue of
64 sixty-four-sentence batches is not. Until the first requests have been timed only
``max_waiting`` applies.

Each request also carries the time it was accepted (its deadline starts there, not when a
thread picks it up) and a way to ask whether its client is still connected (a request whose
client left is not computed): see :data:`ACCEPTED_AT` and :data:`CLIENT_GONE`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

# WSGI environ keys the server sets for the app (edge_mm/api/context.py reads them)
ACCEPTED_AT = "edge_mm.accepted_at"  # time.monotonic() when the request had been read
CLIENT_GONE = "edge_mm.client_gone"  # () -> bool: the client has closed its connection

EWMA_WEIGHT = 0.1  # weight of the newest service time in the moving average


@dataclass(frozen=True)
class DoorSizes:
    threads: int
    max_waiting: int
    max_expected_s: float

    @classmethod
    def derive(cls, threads: int, max_waiting: int, max_expected_s: float, request_timeout_s: float) -> DoorSizes:
        """0 derives: ``max_waiting`` = 4 x threads, ``max_expected_s`` = half the request deadline
        (the other half is margin for a slower request than the average)."""
        return cls(
            threads=threads,
            max_waiting=max_waiting or 4 * threads,
            max_expected_s=max_expected_s or request_timeout_s / 2,
        )


class Door:
    def __init__(self, sizes: DoorSizes) -> None:
        self.sizes = sizes
        self._lock = threading.Lock()
        self.waiting = 0
        self.running = 0
        self.mean_service_s = 0.0  # 0 until the first request is timed
        self.admitted = 0
        self.shed = 0
        self.client_gone = 0

    def expected_s(self, waiting: int | None = None) -> float:
        """Time to answer a request that arrives now behind ``waiting`` others (0 while unmeasured)."""
        ahead = self.waiting if waiting is None else waiting
        s = self.mean_service_s
        return (ahead + 1) * s / self.sizes.threads + s

    def admit(self) -> str | None:
        """None: the request joins the queue (call :meth:`started` when a thread takes it).
        Otherwise why it is turned away."""
        with self._lock:
            if self.waiting >= self.sizes.max_waiting:
                self.shed += 1
                return f"{self.waiting} requests already wait for a worker thread"
            expected = self.expected_s()
            if expected > self.sizes.max_expected_s:
                self.shed += 1
                return (
                    f"an answer would take about {expected:.1f} s here now ({self.waiting} waiting, "
                    f"{self.mean_service_s * 1000:.0f} ms per request on {self.sizes.threads} threads)"
                )
            self.waiting += 1
            self.admitted += 1
            return None

    def started(self) -> None:
        with self._lock:
            self.waiting -= 1
            self.running += 1

    def finished(self, seconds: float | None) -> None:
        """A thread is done with an admitted request; ``seconds`` it took (None: not computed)."""
        with self._lock:
            self.running -= 1
            if seconds is None:
                self.client_gone += 1
            elif self.mean_service_s == 0.0:
                self.mean_service_s = seconds
            else:
                self.mean_service_s += EWMA_WEIGHT * (seconds - self.mean_service_s)

    def requests(self) -> int:
        """Requests admitted and not yet finished: waiting for a thread or being served."""
        return self.waiting + self.running

    def stats(self) -> dict[str, float | int]:
        with self._lock:
            return {
                "waiting": self.waiting,
                "running": self.running,
                "admitted": self.admitted,
                "shed": self.shed,
                "client_gone": self.client_gone,
                "mean_service_ms": round(self.mean_service_s * 1000, 1),
                "expected_s": round(self.expected_s(), 2),
                "threads": self.sizes.threads,
                "max_waiting": self.sizes.max_waiting,
                "max_expected_s": self.sizes.max_expected_s,
            }
