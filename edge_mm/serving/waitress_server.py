"""waitress with hard limits for slow and hostile clients.

- The request line and headers must arrive within ``server.header_timeout_s`` (slowloris).
- At ``server.connection_limit`` the connection that has waited longest without a request being
  served is closed to admit the new one; plain waitress stops accepting instead, so a hundred
  slow connections lock every client out.
- Chunk-size lines and trailers are bounded: waitress re-scans an unterminated one on every read
  (quadratic: about 30 CPU-s per 20 MB).
- Errors waitress answers itself (400, 413, 431, 501, 500) carry the JSON error body; after one,
  the rest of the request body is read and dropped for a while (lingering close) so the client
  reads the answer instead of a connection reset.
- While draining (see :mod:`edge_mm.serving.drain`) every response says ``Connection: close``.
- Overload is answered at the door (:mod:`edge_mm.runtime.door`): a request that has been read
  either joins the queue for a worker thread or is answered 503 with ``Retry-After`` at once, where
  it was read (no thread hand-off). The health probes, ``/metrics`` and ``/info`` are answered by two
  "fast lane" threads of their own, so they never wait behind inference. A queued request whose client has gone is not computed.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import ClientDisconnected, HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.receiver import ChunkedReceiver
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import BadRequest, build_http_date

from edge_mm.config import Settings
from edge_mm.errors import error_body
from edge_mm.runtime.door import ACCEPTED_AT, CLIENT_GONE, Door, DoorSizes
from edge_mm.runtime.solo import SOLO
from edge_mm.serving.dispatcher import LastIdleFirstDispatcher

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

log = logging.getLogger("edge_mm.server")

MAX_CHUNK_LINE = 4096  # chunk size plus extensions, bytes
MAX_TRAILER = 65536  # bytes
LINGER_S = 10.0  # after an error answer, how long the unread request body is drained and dropped
DISCARD_BYTES = 256 * 1024  # per read while lingering
FD_HEADROOM = 256  # open files besides client connections: artifacts, pipes, temp files
DEEPSTACK_PREFIX = "/v1/vision/"
_CODES = {400: "bad_input", 413: "too_large", 431: "headers_too_large", 501: "not_implemented"}
# answered on the fast lane, never queued behind inference: probes and what monitoring reads
PROBE_PATHS = frozenset({"/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready", "/metrics", "/info"})
FAST_LANE_THREADS = 2
# camera streams' Server-Sent Events and MJPEG views (edge_mm/api/streams.py): long-lived, bounded by
# events.max_listeners; they take a worker thread but skip the door (their minutes would skew its pace)
LONG_LIVED = re.compile(r"^/v1/streams/[^/]+/(events|mjpeg)$")
RETRY_AFTER_S = 1
# After a 503 from the door, the connection is not read for this long: a client told to retry in
# RETRY_AFTER_S that sends again at once waits here instead of costing the loop another parse
# (closed-loop clients ignoring Retry-After otherwise turn the 503s into thousands a second).
SHED_PAUSE_S = 0.25


def busy_response(request: Any, why: str, draining: bool) -> tuple[bytes, bool]:
    """(the whole 503 response, whether the connection stays open) for a request turned away at the door."""
    body = error_json(503, "overloaded", f"server busy: {why}; retry in {RETRY_AFTER_S} s", request.path or "")
    connection = request.headers.get("CONNECTION", "").lower()
    keep = not draining and (
        (request.version == "1.1" and connection != "close")
        or (request.version == "1.0" and connection == "keep-alive")
    )
    head = [
        f"HTTP/{request.version} 503 Service Unavailable",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f"Retry-After: {RETRY_AFTER_S}",
        f"Date: {build_http_date(time.time())}",
        "Server: edge-mm",
    ]
    if not keep:
        head.append("Connection: close")
    elif request.version == "1.0":
        head.append("Connection: Keep-Alive")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body, keep


def peer_closed(sock: socket.socket) -> bool:
    """True when the client has closed its side of the connection (or it was reset).

    A peek, so a pipelined request's bytes stay for the parser. A client that half-closes after
    sending its request (shutdown(SHUT_WR)) reads as gone too; HTTP clients do not do that.
    """
    try:
        return sock.recv(1, socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class BoundedChunks(ChunkedReceiver):
    """waitress's chunked decoder with a cap on the chunk-size line and the trailer."""

    error: Any = None

    def received(self, s: bytes) -> int:
        consumed = super().received(s)
        if not self.error and (len(self.control_line) > MAX_CHUNK_LINE or len(self.trailer) > MAX_TRAILER):
            self.error = BadRequest(f"chunk-size line or trailer over {MAX_CHUNK_LINE} / {MAX_TRAILER} bytes")
            self.all_chunks_received = True
        return consumed


class BoundedParser(HTTPRequestParser):
    body_rcv: Any = None

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if self.chunked:
            self.body_rcv = BoundedChunks(self.body_rcv.buf)


def error_json(status: int, code: str, message: str, path: str) -> bytes:
    """The API's error body for the path: DeepStack's dialect under /v1/vision/, else the one body."""
    if path.startswith(DEEPSTACK_PREFIX):
        from edge_mm.api.deepstack import error_body as deepstack_body

        return json.dumps(deepstack_body(status, code, message)[1]).encode()
    return json.dumps(error_body(status, code, message)).encode()


class JsonErrorTask(ErrorTask):
    """An error waitress answers before the app runs, as JSON."""

    def execute(self) -> None:
        error, request = self.request.error, self.request
        status = error.code
        message = {
            413: f"request body is over the limit of {self.channel.server.body_limit} bytes",
            431: f"request line and headers are over the limit of {self.channel.adj.max_request_header_size} bytes",
            500: "internal server error; the server log has the details",
        }.get(status, f"{error.reason}: {error.body}")
        body = error_json(status, _CODES.get(status, "internal_error"), message, getattr(request, "path", "") or "")
        self.status = f"{status} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        if request.chunked or request.content_length > request.body_bytes_received:
            self.channel.linger_after_error = True  # the client may still be sending the body
        self.content_length = len(body)
        self.write(body)


class DrainAwareTask(WSGITask):
    """A request run by the app. An inference request is timed for the door, and not computed
    when its client left while it waited; the app learns when it was accepted (its deadline's start)."""

    def build_response_header(self) -> bytes:
        if self.channel.server.draining.is_set() and not self.close_on_finish:
            self.set_close_on_finish()  # one last answer per connection while shutting down
        return super().build_response_header()

    def get_environment(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environment()
        sock = self.channel.socket
        environ[ACCEPTED_AT] = getattr(self.request, "accepted_at", None) or time.monotonic()
        environ[CLIENT_GONE] = lambda: peer_closed(sock)
        return environ

    def execute(self) -> None:
        if not getattr(self.request, "through_door", False):
            super().execute()
            return
        door: Door = self.channel.server.door
        door.started()
        took = None
        try:
            if peer_closed(self.channel.socket):
                raise ClientDisconnected("the client left while its request waited for a worker thread")
            t0 = time.perf_counter()
            super().execute()
            took = time.perf_counter() - t0
        finally:
            door.finished(took)


class GuardedChannel(HTTPChannel):
    """One client connection; knows since when it has been waiting without a request being served."""

    parser_class = BoundedParser
    error_task_class = JsonErrorTask
    task_class = DrainAwareTask
    close_when_flushed: bool = False
    requests: list[Any]
    request_started = 0.0  # time.time() when the request being received began arriving
    linger_after_error = False
    linger_until = 0.0  # > 0: the answer is sent; reading and dropping the body until then
    paused_until = 0.0  # > 0: just answered 503 at the door; not read until then (time.monotonic())

    def received(self, data: bytes) -> bool:
        pending = self.request
        result = super().received(data)
        if self.request is not None and self.request is not pending:
            self.request_started = time.time()
        return bool(result)

    def readable(self) -> bool:
        if self.paused_until:
            if time.monotonic() < self.paused_until:
                return False
            self.paused_until = 0.0
        return bool(super().readable())

    def answer_now(self, data: bytes, keep_open: bool) -> None:
        """Answer the first queued request with ``data`` (a whole response) without a worker thread.

        Called with ``requests_lock`` held (the server's ``add_task`` runs under it). Like the end of
        waitress's ``service()``: the request is done, and a pipelined one behind it is routed next.
        """
        with self.outbuf_lock:
            self.outbufs[-1].append(data)
            self.current_outbuf_count += len(data)
            self.total_outbufs_len += len(data)
        self.requests.pop(0).close()
        if not keep_open:
            self.close_when_flushed = True
            for request in self.requests:
                request.close()
            self.requests = []
        elif self.requests:
            self.server.add_task(self)
        else:
            self.paused_until = time.monotonic() + SHED_PAUSE_S
        self.server.pull_trigger()  # the loop may be asleep in poll (a worker thread routed this request)

    def waiting_since(self) -> float | None:
        """When it began waiting with no request served (idle keep-alive, or still sending one); else None."""
        if self.requests or self.total_outbufs_len or self.close_when_flushed or self.will_close:
            return None
        return self.request_started if self.request is not None else self.last_activity

    def overdue(self, now: float, header_timeout: float) -> bool:
        """Headers not complete within ``header_timeout`` (s), or lingering past its end."""
        if self.linger_until:
            return now >= self.linger_until
        request = self.request
        return request is not None and not request.headers_finished and now - self.request_started > header_timeout

    def handle_write(self) -> None:
        if self.linger_after_error and self.close_when_flushed and not self.will_close:
            self._flush_exception(self._flush_some)  # no request is running: service() cleared them
            if self.will_close:
                self.handle_close()
            elif not self.total_outbufs_len:
                self.close_when_flushed = False
                self._start_linger()
            return
        super().handle_write()

    def _start_linger(self) -> None:
        try:
            self.socket.shutdown(socket.SHUT_WR)  # the client sees the answer end
        except OSError:
            self.handle_close()
            return
        self.linger_until = time.time() + LINGER_S

    def handle_read(self) -> None:
        if not self.linger_until:
            super().handle_read()
            return
        try:
            self.recv(DISCARD_BYTES)  # recv closes the channel at end of stream
        except OSError:
            self.handle_close()


class GuardedServer(TcpWSGIServer):
    channel_class = GuardedChannel
    active_channels: dict[int, GuardedChannel]
    _map: dict[int, Any]
    effective_port: Any
    next_channel_cleanup: float = 0.0
    header_timeout = 10.0  # s
    body_limit = 0  # bytes, as the app enforces it
    evicted = 0
    timed_out = 0
    _last_eviction_log = 0.0
    _last_shed_log = 0.0

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.draining = threading.Event()
        super().__init__(*args, **kw)
        self.door = Door(DoorSizes.derive(self.adj.threads, 0, 0, 30.0))  # create_server sizes it from settings
        self.fast_lane = LastIdleFirstDispatcher()  # probes, /metrics, /info and waitress's own error answers
        self.fast_lane.set_thread_count(FAST_LANE_THREADS)

    def add_task(self, task: Any) -> None:
        """``task`` is a channel whose first request has been read: route it (see the module docstring)."""
        request = task.requests[0]
        request.accepted_at = time.monotonic()
        if request.error is None and LONG_LIVED.match(request.path or ""):
            self.task_dispatcher.add_task(task)
            return
        if request.error is None and request.path not in PROBE_PATHS:
            why = self.door.admit()
            if why is None:
                request.through_door = True
                self.task_dispatcher.add_task(task)
            else:  # answered here, in whichever thread routes it: no hand-off, no worker thread
                self._log_shedding(why)
                task.answer_now(*busy_response(request, why, self.draining.is_set()))
            return
        self.fast_lane.add_task(task)

    def _log_shedding(self, why: str) -> None:
        """One line a minute while shedding (a line per request would flood the log under overload)."""
        now = time.time()
        if now - self._last_shed_log > 60:
            self._last_shed_log = now
            log.warning("overloaded: answering 503 at the door (%d so far); now: %s", self.door.stats()["shed"], why)

    def shutdown_threads(self, timeout: float) -> None:
        """Stop both thread pools within ``timeout`` (s) in all; requests still queued are dropped."""
        end = time.monotonic() + timeout
        self.task_dispatcher.shutdown(cancel_pending=True, timeout=timeout)
        self.fast_lane.shutdown(cancel_pending=True, timeout=max(0.0, end - time.monotonic()))

    def readable(self) -> bool:
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        if not self.accepting:
            return False
        # at the limit, accept only when a waiting connection can make room (else leave it in the backlog)
        return len(self.active_channels) < self.adj.connection_limit or self.longest_waiting() is not None

    def longest_waiting(self) -> GuardedChannel | None:
        best, since = None, float("inf")
        for channel in self.active_channels.values():
            t = channel.waiting_since()
            if t is not None and t < since:
                best, since = channel, t
        return best

    def handle_accept(self) -> None:
        if len(self.active_channels) >= self.adj.connection_limit:
            victim = self.longest_waiting()
            if victim is None:
                return
            victim.handle_close()
            self.evicted += 1
            now = time.time()
            if now - self._last_eviction_log > 60:
                self._last_eviction_log = now
                log.warning(
                    "connection limit (%d) reached: closing the longest-waiting connections to admit new ones "
                    "(%d so far)",
                    self.adj.connection_limit,
                    self.evicted,
                )
        super().handle_accept()

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle connections past channel_timeout
        for channel in list(self.active_channels.values()):
            if channel.overdue(now, self.header_timeout):
                channel.will_close = True
                self.timed_out += 1

    def busy(self) -> list[GuardedChannel]:
        """Connections with a request arriving, queued, running or being answered, or an answer lingering."""
        return [
            ch
            for ch in self.active_channels.values()
            if ch.waiting_since() is None or ch.request is not None or ch.linger_until
        ]


def allowed_connections(wanted: int) -> int:
    """Raise the open-file limit to fit ``wanted`` connections; the connections it allows."""
    if resource is None:
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + FD_HEADROOM
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        allowed = max(10, soft - FD_HEADROOM)
        log.warning(
            "open-file limit %d allows %d connections, not server.connection_limit = %d; raise it (ulimit -n)",
            soft,
            allowed,
            wanted,
        )
        return allowed
    return wanted


def door_from_settings(settings: Settings) -> Door:
    """The door sized by ``server.threads``, ``server.max_waiting`` and ``server.max_expected_s``."""
    return Door(
        DoorSizes.derive(
            settings["server.threads"],
            settings["server.max_waiting"],
            settings["server.max_expected_s"],
            settings["runtime.request_timeout_s"],
        )
    )


def create_server(app: Any, settings: Settings, door: Door | None = None) -> GuardedServer:
    """Bind ``server.host``:``server.port`` (the first address it resolves to) with the limits from settings;
    ``door`` (default: sized from settings) is shared with the app, which shows it in /info and /metrics."""
    adj = Adjustments(
        host=settings["server.host"],
        port=settings["server.port"],
        threads=settings["server.threads"],
        # waitress refuses at >= its limit, Flask above MAX_CONTENT_LENGTH: the same edge
        max_request_body_size=settings["server.max_body_bytes"] + 1,
        max_request_header_size=settings["server.max_header_bytes"],
        connection_limit=allowed_connections(settings["server.connection_limit"]),
        channel_timeout=settings["server.channel_timeout_s"],
        cleanup_interval=settings["server.cleanup_interval_s"],
        backlog=settings["server.backlog"],
        recv_bytes=settings["server.recv_bytes"],
        inbuf_overflow=settings["server.inbuf_overflow_bytes"],
        outbuf_overflow=settings["server.outbuf_overflow_bytes"],
        asyncore_use_poll=True,  # select() cannot watch descriptors above 1023
        ident="edge-mm",
        clear_untrusted_proxy_headers=True,
    )
    # waitress warns once per queued request ("Task queue depth is N"); the door bounds that queue,
    # logs once a minute when it sheds, and /metrics shows its depth
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    # the most recently idle thread takes the next request: light load stays on warm threads (serving/dispatcher.py)
    workers = LastIdleFirstDispatcher()
    workers.set_thread_count(adj.threads)
    server = GuardedServer(app, map={}, adj=adj, sockinfo=adj.listen[0], dispatcher=workers)
    server.door = door or door_from_settings(settings)
    # a vision pass may take every core only while it is the one request here (runtime/solo.py)
    SOLO.count_requests(server.door.requests)
    server.header_timeout = settings["server.header_timeout_s"]
    server.body_limit = settings["server.max_body_bytes"]
    return server
