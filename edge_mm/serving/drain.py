"""Graceful shutdown. SIGTERM or SIGINT: stop accepting connections, answer GET /health/ready
and /v2/health/ready with 503, let the requests already received finish within
``server.drain_timeout_s``, then return so the process exits 0. A second signal ends the
wait at once (while models are still loading: exits at once with 128 + the signal number)."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from waitress import wasyncore

from edge_mm.serving.waitress_server import GuardedServer

log = logging.getLogger("edge_mm.server")

# each readiness route -> its 503 body while draining: ours, and Open Inference's (api/open_inference.py)
READY_BODIES = {
    "/health/ready": {"status": "draining", "detail": "the server is shutting down"},
    "/v2/health/ready": {"ready": False},
}


class Drain:
    """Set by the first signal (``requested``) and by a second one (``hurry``), or by :meth:`stop`.

    ``deadline`` (monotonic s) is set when the drain begins: the whole shutdown (the drain, then
    the wait for warm-up) ends by it.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.hurry = threading.Event()
        self.signal_name = ""
        self.deadline = math.inf
        self.wake: Callable[[], None] = lambda: None  # interrupts the poll loop once serving
        self.serving = False

    def install(self) -> None:
        """Handle SIGTERM and SIGINT (main thread only: Python runs signal handlers there)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)

    def attach(self, wake: Callable[[], None]) -> None:
        """Serving has begun: a signal now wakes the poll loop with ``wake``."""
        self.wake = wake
        self.serving = True

    def stop(self, reason: str) -> None:
        """Begin the drain from a thread of this process, as a signal would (``reason`` is logged)."""
        self.signal_name = reason
        self.requested.set()
        self.wake()

    def remaining(self) -> float:
        """Seconds left until ``deadline`` (0 once past it)."""
        return max(0.0, self.deadline - time.monotonic())

    def detach(self) -> None:
        """The loop is closing its sockets: a late signal must not write to a closed trigger."""
        self.wake = lambda: None

    def _on_signal(self, signum: int, frame: Any) -> None:
        # no logging here: the main thread may hold the logging lock when the signal lands
        if self.requested.is_set():
            if not self.serving:
                os._exit(128 + signum)  # a second signal while models load: do not wait for them
            self.hurry.set()
        self.signal_name = signal.Signals(signum).name
        self.requested.set()
        self.wake()


def ready_503_while_draining(app: Any, draining: threading.Event) -> Any:
    """WSGI wrapper: both readiness routes answer 503 once draining, so load balancers stop sending."""
    answers = {}
    for path, fields in READY_BODIES.items():
        body = json.dumps(fields).encode()
        answers[path] = (body, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        answer = answers.get(environ.get("PATH_INFO", "")) if draining.is_set() else None
        if answer is not None:
            start_response("503 Service Unavailable", answer[1])
            return [answer[0]]
        return app(environ, start_response)

    return wsgi


def _accept_backlog(server: GuardedServer, most: int = 4096, quiet_s: float = 0.02, within_s: float = 0.25) -> None:
    """Accept the handshakes the kernel completed (their clients have sent requests), until none came
    for ``quiet_s`` or ``within_s`` passed. Closing a listener resets what is still queued: a client
    connecting in that last instant sees a reset and retries, as it would a refused connection."""
    end = time.monotonic() + within_s
    quiet_since = time.monotonic()
    for _ in range(most):
        before = len(server.active_channels)
        server.handle_accept()
        now = time.monotonic()
        if len(server.active_channels) != before:
            quiet_since = now
        elif now - quiet_since >= quiet_s or now >= end:
            return
        else:
            time.sleep(0.002)


def serve_until_drained(server: GuardedServer, drain: Drain, timeout_s: float) -> int:
    """Run the server's loop until a signal, then drain until ``drain.deadline`` (``timeout_s`` from the
    signal); the number of requests left unfinished (received, or still arriving)."""
    socket_map = server._map
    while not drain.requested.is_set():
        wasyncore.poll2(server.adj.asyncore_loop_timeout, socket_map)
    drain.deadline = time.monotonic() + timeout_s
    _accept_backlog(server)  # handshakes the kernel completed: their clients have sent requests
    wasyncore.dispatcher.close(server)  # stop listening; keep the trigger that wakes this loop
    for _ in range(3):
        wasyncore.poll2(0, socket_map)  # read requests already in socket buffers before judging idleness
    log.info("%s: not accepting connections; draining for up to %.0f s", drain.signal_name, timeout_s)
    t0 = time.monotonic()
    while True:
        busy = server.busy()
        keep = {id(ch) for ch in busy}
        for channel in list(server.active_channels.values()):
            if id(channel) not in keep:
                channel.handle_close()  # idle keep-alive: nothing in flight
        if not busy or drain.hurry.is_set() or drain.remaining() == 0:
            break
        server.maintenance(time.time())  # header timeouts and lingering still apply
        wasyncore.poll2(0.05, socket_map)
    left = sum(len(ch.requests) + (ch.request is not None) for ch in busy)  # a half-sent upload is cut too
    if busy:
        log.warning(
            "drain ended after %.1f s with %d request(s) unfinished on %d connection(s)",
            time.monotonic() - t0,
            left,
            len(busy),
        )
    else:
        log.info("drained in %.2f s", time.monotonic() - t0)
    server.shutdown_threads(timeout=min(1.0, drain.remaining()))
    drain.detach()
    wasyncore.close_all(socket_map)
    return left
