"""The waitress layer against slow and hostile clients, with a real server on 127.0.0.1 in-process:
slow connections cannot lock out a normal request, header deadline, bounded chunked parsing,
JSON bodies for the errors waitress answers itself (413 with a 50 MB body), and the drain."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
from contextlib import contextmanager

import pytest

from edge_mm.config import MiB
from edge_mm.serving.drain import Drain, ready_503_while_draining, serve_until_drained
from edge_mm.serving.waitress_server import create_server


@contextmanager
def live_server(settings, registry, **overrides):  # type: ignore[no-untyped-def]
    """(server, port) for create_app(settings) behind our waitress; drained and closed afterwards."""
    from edge_mm.api import create_app

    settings = settings.replace(server__port=0, **overrides)
    drain = Drain()
    server = create_server(ready_503_while_draining(create_app(settings, registry), drain.requested), settings)
    server.draining = drain.requested
    drain.attach(server.pull_trigger)
    loop = threading.Thread(target=serve_until_drained, args=(server, drain, 5.0), daemon=True)
    loop.start()
    try:
        yield server, int(server.effective_port), drain
    finally:
        drain.requested.set()
        drain.hurry.set()
        drain.wake()
        loop.join(15)
        assert not loop.is_alive()


def call(port, method, path, body=None, headers=None, timeout=30.0):  # type: ignore[no-untyped-def]
    """(status, headers, parsed JSON body, seconds)."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        data = r.read()
        return r.status, dict(r.headers), json.loads(data), time.perf_counter() - t0
    finally:
        conn.close()


def raw_response(s: socket.socket) -> tuple[int, dict[str, str], dict]:
    """(status, headers, JSON body) of one response read whole from a raw socket (it may arrive in pieces)."""
    r = http.client.HTTPResponse(s)
    r.begin()
    return r.status, dict(r.headers), json.loads(r.read())


def slow_connection(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")  # headers never end
    return s


EMBED = json.dumps({"inputs": ["a normal request"]}).encode()


@pytest.mark.parametrize(("limit", "slow"), [(1000, 150), (20, 60)])
def test_slow_connections_do_not_lock_out_a_normal_request(tiny_settings, tiny_registry, limit, slow):
    """150 slow connections under the limit; 60 over a limit of 20 (the longest-waiting are closed)."""
    with live_server(tiny_settings, tiny_registry, server__connection_limit=limit) as (server, port, _):
        socks = [slow_connection(port) for _ in range(slow)]
        try:
            time.sleep(0.5)
            for _ in range(3):
                status, _, body, seconds = call(port, "GET", "/health/live", timeout=10)
                assert status == 200
                assert seconds < 5  # measured: milliseconds (bench/slow_clients.py)
                status, _, body, seconds = call(port, "POST", "/v1/embeddings", EMBED, timeout=10)
                assert status == 200
                assert len(body["data"]) == 1
                assert seconds < 5
            assert len(server.active_channels) <= limit
            assert (server.evicted > 0) == (slow >= limit)
        finally:
            for s in socks:
                s.close()


def test_headers_must_arrive_within_the_header_timeout(tiny_settings, tiny_registry):
    with live_server(tiny_settings, tiny_registry, server__header_timeout_s=1.0) as (server, port, _):
        s = slow_connection(port)
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < 8:
            try:
                s.sendall(b"X-More: 1\r\n")  # a line every 0.2 s: active, but never done
                s.settimeout(0.2)
                closed = s.recv(100) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
            if closed:
                break
        s.close()
        assert closed
        assert 1.0 <= time.monotonic() - t0 < 5
        assert server.timed_out >= 1
        assert call(port, "GET", "/health/live")[0] == 200  # a prompt client is unaffected


def test_over_limit_body_gets_the_json_413_and_the_client_reads_it(tiny_settings, tiny_registry):
    """50 MB against a 64 KiB limit: waitress refuses at the headers; the client still reads the answer."""
    limit = tiny_settings["server.max_body_bytes"]
    with live_server(tiny_settings, tiny_registry) as (_, port, _):
        status, headers, body, _ = call(port, "POST", "/v1/embeddings", b"x" * (50 * MiB))
        assert status == 413
        assert headers["Content-Type"] == "application/json"
        assert body == {
            "error": {"status": 413, "code": "too_large", "message": f"request body is over the limit of {limit} bytes"}
        }
        status, _, body, _ = call(port, "POST", "/v1/embeddings", b" " * (limit + 1))
        assert status == 413
        assert body["error"]["code"] == "too_large"
        status, _, body, _ = call(port, "POST", "/v1/embeddings", EMBED + b" " * (limit - len(EMBED)))
        assert status == 200  # exactly at the limit is allowed
        status, _, body, _ = call(port, "POST", "/v1/vision/scene", b"x" * (limit + 1))
        assert status == 413
        assert body["success"] is False  # the DeepStack dialect on its routes


def test_waitress_errors_use_the_json_body(tiny_settings, tiny_registry):
    with live_server(tiny_settings, tiny_registry, server__max_header_bytes=4096) as (_, port, _):
        status, _, body, _ = call(port, "GET", "/health/live", headers={"X-Big": "y" * 5000})
        assert (status, body["error"]["code"]) == (431, "headers_too_large")
        status, _, body, _ = call(port, "POST", "/v1/embeddings", EMBED, headers={"Transfer-Encoding": "gzip"})
        assert (status, body["error"]["code"]) == (501, "not_implemented")
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        status, _, body = raw_response(s)
        s.close()
        assert (status, body["error"]["code"]) == (400, "bad_input")


def test_unterminated_chunk_size_line_is_cut_short(tiny_settings, tiny_registry):
    """20 MB with no end to the chunk-size line: 400 after a few KiB, not a quadratic re-scan."""
    with live_server(tiny_settings, tiny_registry, server__max_body_bytes=32 * MiB) as (_, port, _):
        cpu0 = time.process_time()
        status, _, body, seconds = call(
            port, "POST", "/v1/embeddings", b"f" * (20 * MiB), headers={"Transfer-Encoding": "chunked"}
        )
        cpu = time.process_time() - cpu0
        assert status == 400
        assert body["error"]["code"] == "bad_input"
        assert "chunk-size line" in body["error"]["message"]
        assert cpu < 10  # unbounded: about 30 CPU-s for the server alone
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(EMBED), EMBED)
        status, _, body, _ = call(port, "POST", "/v1/embeddings", chunked, headers={"Transfer-Encoding": "chunked"})
        assert status == 200  # well-formed chunked bodies still work
        assert len(body["data"]) == 1


def test_drain_answers_in_flight_requests_and_refuses_new_connections(tiny_settings, tiny_registry):
    with live_server(tiny_settings, tiny_registry) as (server, port, drain):
        half = EMBED[:10]
        upload = socket.create_connection(("127.0.0.1", port), timeout=10)
        upload.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        upload.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(EMBED), half))
        probe = socket.create_connection(("127.0.0.1", port), timeout=10)
        probe.sendall(b"GET /health/ready HTTP/1.1\r\nHost: x\r\n")
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)
        time.sleep(0.3)
        drain.requested.set()
        drain.wake()
        time.sleep(0.5)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        assert idle.recv(10) == b""  # an idle keep-alive connection is closed
        probe.sendall(b"\r\n")
        status, headers, body = raw_response(probe)
        assert (status, headers["Connection"], body["status"]) == (503, "close", "draining")
        upload.sendall(EMBED[10:])
        status, headers, _ = raw_response(upload)
        assert (status, headers["Connection"]) == (200, "close")
        for s in (upload, probe, idle):
            s.close()


def test_first_signal_drains_second_ends_the_wait():
    drain, woke = Drain(), []
    drain.attach(lambda: woke.append(1))
    drain._on_signal(signal.SIGTERM, None)
    assert drain.requested.is_set()
    assert not drain.hurry.is_set()
    assert drain.signal_name == "SIGTERM"
    drain._on_signal(signal.SIGINT, None)
    assert drain.hurry.is_set()
    assert woke == [1, 1]


def test_a_signal_after_the_drain_finished_is_harmless(tiny_settings, tiny_registry):
    with live_server(tiny_settings, tiny_registry) as (server, _, drain):
        drain.requested.set()
        drain.wake()
        deadline = time.monotonic() + 10
        while not server.trigger._closed and time.monotonic() < deadline:
            time.sleep(0.05)  # the loop closes every socket, its wake-up trigger included
        assert server.trigger._closed
        drain._on_signal(signal.SIGTERM, None)  # was: OSError EBADF writing to the closed trigger


def test_the_door_answers_503_where_the_request_was_read_pipelined_and_http10_too(tiny_settings, tiny_registry):
    from edge_mm.runtime.door import Door, DoorSizes

    with live_server(tiny_settings, tiny_registry) as (server, port, _):
        server.door = Door(DoorSizes(threads=1, max_waiting=0, max_expected_s=1))  # nothing may wait: all shed
        post = (
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(EMBED)}\r\n\r\n".encode()
            + EMBED
        )
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(post * 3 + b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")  # pipelined
            stream = _OneReader(s)  # one buffer for the four answers
            answers = [raw_response(stream) for _ in range(4)]  # type: ignore[arg-type]
        assert [status for status, _, _ in answers] == [503, 503, 503, 200]
        for _, headers, body in answers[:3]:
            assert headers["Retry-After"] == "1"
            assert "Connection" not in headers  # kept open: the answers behind it arrived on it
            assert body["error"]["code"] == "overloaded"
            assert "requests already wait for a worker thread" in body["error"]["message"]
        assert answers[3][2] == {"status": "alive"}  # the probe is not behind the door
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(post.replace(b"HTTP/1.1", b"HTTP/1.0"))
            status, headers, body = raw_response(s)
            assert (status, headers["Connection"]) == (503, "close")
            assert s.recv(1) == b""  # and closed
        assert server.door.stats()["shed"] == 4


class _OneReader:
    """A socket stand-in for http.client.HTTPResponse whose every makefile() is one shared buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.file = sock.makefile("rb")

    def makefile(self, mode: str):  # type: ignore[no-untyped-def]
        return self

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.file, name)

    def close(self) -> None:
        """Each answer's reader closes its file at the end of the body: the next answer needs it."""
